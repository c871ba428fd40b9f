//! A small EC2 world in moto for launch tests: a VPC, tagged subnets in two
//! zones, a tagged security group and tagged AL2023-named AMIs for both
//! architectures.
#![allow(
    dead_code,
    reason = "each test binary includes this module and uses part of it"
)]

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};

/// The discovery tag every selector in the tests uses (value `demo`).
pub const DISCOVERY: &str = "karpenter.sh/discovery";

/// What `setup` created in moto.
pub struct World {
    pub subnets_a: Vec<String>,
    pub subnet_b: String,
    pub sg: String,
    pub ami: String,
    pub ami_arm: String,
}

pub fn tags(rt: ResourceType, pairs: &[(&str, &str)]) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(rt);
    for (k, v) in pairs {
        b = b.tags(Tag::builder().key(*k).value(*v).build());
    }
    b.build()
}

/// A VPC with two tagged subnets in us-east-1a and one in us-east-1b, a
/// tagged security group, an untagged one, and a tagged EKS-named AMI.
pub async fn setup(ec2: &aws_sdk_ec2::Client) -> World {
    setup_in(ec2, "us-east-1").await
}

/// The same world in `region` (zones `<region>a` and `<region>b`); `ec2`
/// must be a client for that region.
pub async fn setup_in(ec2: &aws_sdk_ec2::Client, region: &str) -> World {
    let (za, zb) = (format!("{region}a"), format!("{region}b"));
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .expect("CreateVpc")
        .vpc
        .and_then(|v| v.vpc_id)
        .expect("vpc id");
    let subnet = |cidr: &'static str, zone: String, tagged: bool| {
        let vpc = vpc.clone();
        let spec = if tagged {
            tags(ResourceType::Subnet, &[(DISCOVERY, "demo")])
        } else {
            tags(ResourceType::Subnet, &[("other", "x")])
        };
        async move {
            ec2.create_subnet()
                .vpc_id(vpc)
                .cidr_block(cidr)
                .availability_zone(zone)
                .tag_specifications(spec)
                .send()
                .await
                .expect("CreateSubnet")
                .subnet
                .and_then(|s| s.subnet_id)
                .expect("subnet id")
        }
    };
    let a1 = subnet("10.0.1.0/24", za.clone(), true).await;
    let a2 = subnet("10.0.2.0/25", za.clone(), true).await;
    let b = subnet("10.0.3.0/24", zb, true).await;
    let _untagged = subnet("10.0.4.0/24", za, false).await;
    let sg = ec2
        .create_security_group()
        .group_name("nodes")
        .description("nodes")
        .vpc_id(&vpc)
        .tag_specifications(tags(ResourceType::SecurityGroup, &[(DISCOVERY, "demo")]))
        .send()
        .await
        .expect("CreateSecurityGroup")
        .group_id
        .expect("sg id");
    // RegisterImage in moto has no architecture; an image made from an
    // instance of moto's built-in AMIs has theirs (x86_64, arm64).
    let ami = image(
        ec2,
        &b,
        "ami-ekslinux",
        "amazon-eks-node-al2023-x86_64-standard-1.34-v20260101",
    )
    .await;
    let ami_arm = image(
        ec2,
        &b,
        "ami-0e9271c829888680e",
        "amazon-eks-node-al2023-arm64-standard-1.34-v20260101",
    )
    .await;
    for id in [&ami, &ami_arm] {
        ec2.create_tags()
            .resources(id)
            .tags(Tag::builder().key(DISCOVERY).value("demo").build())
            .send()
            .await
            .expect("CreateTags");
    }
    World {
        subnets_a: vec![a1, a2],
        subnet_b: b,
        sg,
        ami,
        ami_arm,
    }
}

/// An image named `name` made from a (then terminated) instance of `base`.
pub async fn image(ec2: &aws_sdk_ec2::Client, subnet: &str, base: &str, name: &str) -> String {
    let run = ec2
        .run_instances()
        .image_id(base)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .send()
        .await
        .expect("RunInstances");
    let iid = run.instances()[0]
        .instance_id()
        .expect("instance id")
        .to_string();
    let img = ec2
        .create_image()
        .instance_id(&iid)
        .name(name)
        .send()
        .await
        .expect("CreateImage")
        .image_id
        .expect("ami id");
    ec2.terminate_instances()
        .instance_ids(&iid)
        .send()
        .await
        .expect("TerminateInstances");
    img
}

/// The node role the tests' node classes name (`KarpenterNodeRole-demo`),
/// made in moto's IAM: the controller puts it into an instance profile
/// before it launches, and IAM refuses a role that does not exist.
pub async fn node_role(settings: &nodewright::cloud::ec2::Ec2Settings) {
    let config = nodewright::cloud::ec2::load(settings).await;
    nodewright::cloud::ec2::iam(&config)
        .create_role()
        .role_name("KarpenterNodeRole-demo")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .expect("CreateRole");
}
