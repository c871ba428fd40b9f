//! STAND-IN, to be replaced: the real corpus generator (small workloads with mixed
//! requests, selectors, affinities, spreads, tolerations, host ports and PVCs) is
//! written separately with this same signature. This file holds two fixed cases
//! so that `tests/oracle.rs` compiles and runs its corpus test until then.
#![allow(dead_code, reason = "a stand-in: tests/oracle.rs uses part of it")]

use proptest::prelude::*;

/// One generated input: policy text and workload YAML text.
#[derive(Debug, Clone)]
pub struct Case {
    pub policy: String,
    pub workload: String,
}

const POLICY: &str = include_str!("../../policies/default.policy");

const SPREAD: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: corpus}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule,
           labelSelector: {matchLabels: {app: web}}}
      containers:
        - {name: c, image: x, resources: {requests: {cpu: 300m, memory: 256Mi}}}
";

const ANTI: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: cache, namespace: corpus}
spec:
  replicas: 3
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: cache}}}
      nodeSelector: {kubernetes.io/arch: amd64}
      containers:
        - {name: c, image: x, resources: {requests: {cpu: 1, memory: 1Gi}}}
";

/// The stand-in strategy: one of two fixed cases.
pub fn case_strategy() -> impl Strategy<Value = Case> {
    prop_oneof![
        Just(Case {
            policy: POLICY.to_string(),
            workload: SPREAD.to_string(),
        }),
        Just(Case {
            policy: POLICY.to_string(),
            workload: ANTI.to_string(),
        }),
    ]
}
