"""Kubernetes NetworkPolicy ingress semantics, evaluated over pods (no cluster needed).

As the API reference states them (networking.k8s.io/v1): a pod is isolated for ingress when at
least one policy of its namespace selects it with "Ingress" in its policyTypes (absent policyTypes
mean Ingress); an isolated pod accepts a connection when ANY selecting policy has an ingress rule
whose `from` matches the source (no `from`: every source) and whose `ports` match the destination
port (no `ports`: every port). Policies only add. A peer with only `podSelector` means pods of
the policy's own namespace; only `namespaceSelector`, every pod of the matching namespaces; both,
the matching pods of the matching namespaces. ipBlock peers never match a pod here (they are for
addresses outside the cluster). Named ports resolve against the destination pod's containers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: Mapping[str, str]
    ports: Mapping[str, int] = field(default_factory=dict)  # container port name -> number


def namespace_labels(namespace: str) -> dict[str, str]:
    """The label every namespace carries automatically."""
    return {"kubernetes.io/metadata.name": namespace}


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector: matchLabels AND every matchExpression; an empty selector matches all."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op!r}")
    return True


def _selects(policy: Mapping[str, Any], pod: Pod) -> bool:
    spec = policy["spec"]
    types = spec.get("policyTypes") or ["Ingress"]
    return (policy["metadata"]["namespace"] == pod.namespace and "Ingress" in types
            and selector_matches(spec.get("podSelector"), pod.labels))


def _peer_matches(peer: Mapping[str, Any], policy_ns: str, src: Pod) -> bool:
    if "ipBlock" in peer:
        return False
    pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
    if ns_sel is None:
        in_ns = src.namespace == policy_ns
    else:
        in_ns = selector_matches(ns_sel, namespace_labels(src.namespace))
    return in_ns and (pod_sel is None or selector_matches(pod_sel, src.labels))


def _port_matches(ports: list[Mapping[str, Any]] | None, dst: Pod, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        want = p.get("port")
        if want is None:
            return True
        number = dst.ports.get(want) if isinstance(want, str) else want
        if number is not None and number <= port <= p.get("endPort", number):
            return True
    return False


def allowed(policies: Iterable[Mapping[str, Any]], src: Pod, dst: Pod, port: int,
            protocol: str = "TCP") -> bool:
    """Whether `src` may open a connection to `dst`:`port` under these policies."""
    selecting = [p for p in policies if _selects(p, dst)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            if peers and not any(_peer_matches(peer, policy["metadata"]["namespace"], src)
                                 for peer in peers):
                continue
            if _port_matches(rule.get("ports"), dst, port, protocol):
                return True
    return False


def who_may_reach(policies: list[Mapping[str, Any]], pods: Iterable[Pod], dst: Pod, port: int) -> set[str]:
    """Names of the pods (other than `dst`) allowed to connect to `dst`:`port`."""
    return {p.name for p in pods if p is not dst and allowed(policies, p, dst, port)}
