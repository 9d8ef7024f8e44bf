"""Real Kubernetes for the test suite: three control planes (etcd, kube-apiserver,
kube-controller-manager) built from the Go modules and run as plain processes on loopback.

    python -m tests.realstack up --kubeconfig PATH [--audit-dir DIR] [--kubernetes v1.37.2]

`build` makes the binaries (once per version, into a cache outside the repository), `pki` the
certificates, `controlplane` starts and stops one cluster, `profile` installs what an OpenShift
Virtualization cluster and an MTV host hold, `stack` ties the three clusters together.
"""
