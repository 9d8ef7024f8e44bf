"""The OpenShift Virtualization and MTV profile of the sandbox, Forklift's imitation among it.

It plugs into the generic API server of `mtv_register.sandbox` (which never imports it): its
CRDs and objects go into a cluster's store, its controller listens to that store, its webhooks
hang in the cluster's admission chain. Names say what each module is, and none is named like a
module of the product (`mtv_register.forklift`, `mtv_register.kube`, ...):

    profile      what every cluster holds (OpenShift Virtualization) and what the MTV host adds
    prerequisites  what cross-cluster live migration needs of both, healthy unless broken
    operators    HCO and the forklift operator, as far as they carry a setting further
    reconcile    Forklift's provider controller as a pure pass; its versions and timing
    conditions   Forklift's condition list, as a pass stages it
    golang       what Go's standard library answers where Forklift depends on it
    trust        certificates as Go's crypto/x509 judges them
    probe        Forklift's connection test of an `openshift` Provider, over the network
    workqueue    controller-runtime's work queue
    loop         the provider controller around the pass: watches, queue, status, requeue
    admission    forklift-api's provider-Secret webhooks as pure functions
    controller   Driver A: Forklift in-process on the sandbox's MTV host, on its store
    webhook      forklift-api's webhooks served over HTTPS, for a real API server to call
    apiclient    a real API server as Driver B reaches it
    remote       Driver B: the imitation as a process of its own against any API server
                 (`python -m mtv_register.sandbox.mtv.remote`, as the real-stack tests run it)
"""
