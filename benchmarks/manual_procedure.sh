#!/usr/bin/env bash
# The seed's manual procedure, scripted with kubectl as a careful administrator would run it:
# steps 1-7 on the source and on the destination, then the provider Secret and Provider on the
# MTV host, the owner reference, and a wait until Forklift reports Ready.
# Usage: manual_procedure.sh WORKDIR   (KUBECONFIG set; contexts source, destination, mtv)
set -euo pipefail
work="$1"
role_yaml="$work/role.yaml"
secret_template="$work/secret.yaml"
ns=mtv-manual
sa=mtv-manual

for ctx in source destination; do
  k="kubectl --context $ctx"
  $k create -f "$role_yaml" >/dev/null
  $k create namespace "$ns" >/dev/null
  $k create serviceaccount "$sa" -n "$ns" >/dev/null
  $k create clusterrolebinding "$sa" --clusterrole=live-migration-role \
    --serviceaccount="$ns:$sa" >/dev/null
  sed -e "s/<name_of_secret>/$sa-token/" -e "s/<namespace_for_service_account>/$ns/" \
    -e "s/<service_account_name>/$sa/" "$secret_template" > "$work/secret-$ctx.yaml"
  $k apply -f "$work/secret-$ctx.yaml" >/dev/null
  until [ -n "$($k get secret "$sa-token" -n "$ns" -o jsonpath='{.data.token}')" ]; do
    sleep 0.2
  done
  umask 077
  $k get secret "$sa-token" -n "$ns" -o jsonpath='{.data.token}' | base64 --decode \
    > "$work/token-$ctx"
  $k get cm kube-root-ca.crt -n "$ns" -o jsonpath='{.data.ca\.crt}' > "$work/ca-$ctx.crt"
  kubectl config view --raw -o jsonpath="{.clusters[?(@.name==\"$ctx\")].cluster.server}" \
    > "$work/url-$ctx"
done

h="kubectl --context mtv"
for ctx in source destination; do
  $h create secret generic "$ctx-manual" -n openshift-mtv \
    --from-file=token="$work/token-$ctx" --from-file=ca.crt="$work/ca-$ctx.crt" \
    --from-file=url="$work/url-$ctx" --from-literal=insecureSkipVerify=false >/dev/null
  $h label secret "$ctx-manual" -n openshift-mtv createdForProviderType=openshift \
    createdForResourceType=providers >/dev/null
  cat > "$work/provider-$ctx.yaml" <<YAML
apiVersion: forklift.konveyor.io/v1beta1
kind: Provider
metadata:
  name: $ctx-manual
  namespace: openshift-mtv
spec:
  type: openshift
  url: $(cat "$work/url-$ctx")
  secret:
    name: $ctx-manual
    namespace: openshift-mtv
YAML
  $h create -f "$work/provider-$ctx.yaml" >/dev/null
  uid=$($h get provider "$ctx-manual" -n openshift-mtv -o jsonpath='{.metadata.uid}')
  $h patch secret "$ctx-manual" -n openshift-mtv --type=merge -p \
    "{\"metadata\":{\"ownerReferences\":[{\"apiVersion\":\"forklift.konveyor.io/v1beta1\",\"kind\":\"Provider\",\"name\":\"$ctx-manual\",\"uid\":\"$uid\"}]}}" >/dev/null
done
for ctx in source destination; do
  $h wait --for=jsonpath='{.status.phase}'=Ready "provider/$ctx-manual" -n openshift-mtv \
    --timeout=120s >/dev/null
done
