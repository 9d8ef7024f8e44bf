"""mtv-register: register OpenShift Virtualization clusters with MTV (Forklift), end to end."""

__version__ = "0.1.0"
