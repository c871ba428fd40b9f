//! Karpenter YAML (v1 NodePool, EC2NodeClass, NodeOverlay; v1alpha5 Provisioner, AWSNodeTemplate) → policy AST.
