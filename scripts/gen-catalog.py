#!/usr/bin/env python3
"""Regenerate nodewright's embedded EC2 catalog (us-east-1).

Inputs
  * moto's package data (instance specs and us-east-1 offerings):
      moto/ec2/resources/instance_types.json.gz
      moto/ec2/resources/instance_type_offerings/availability-zone/us-east-1.json.gz
    plus moto's zone-name -> zone-id table for us-east-1, so that the embedded
    catalog names zones exactly as moto's DescribeAvailabilityZones does.
  * data/aws/ec2-on-demand-prices-us-east-1.csv (on-demand $/hour)
  * data/aws/ec2-eni-limits.csv (ENIs, IPv4 per ENI, trunking, branch ENIs)

Output
  * data/catalog/us-east-1.json: the raw specs in nodewright's `RawCatalog`
    shape (reviewable, diffable), then
  * data/catalog/us-east-1.postcard: the same, pre-parsed, written by
    `nodewright catalog generate`, which also writes
  * data/catalog/us-east-1.catalog.postcard: the built catalog the binary
    decodes at start-up.

Usage (moto pinned so that the catalog is reproducible):
    python3 -m venv /tmp/v && /tmp/v/bin/pip install moto==5.2.1
    /tmp/v/bin/python scripts/gen-catalog.py            # JSON + postcard
    /tmp/v/bin/python scripts/gen-catalog.py --no-cargo # JSON only

Nothing here runs at plan time: a fresh clone plans offline from the committed
postcard file, with no Python and no network.
"""

import argparse
import csv
import gzip
import json
import os
import subprocess
import sys

REGION = "us-east-1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(msg):
    print(f"gen-catalog: error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_moto():
    try:
        import moto  # noqa: F401
        from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend
    except ImportError as e:
        fail(f"moto is not importable ({e}); hint: python3 -m venv /tmp/v && /tmp/v/bin/pip install moto==5.2.1")
    base = os.path.join(os.path.dirname(moto.__file__), "ec2", "resources")
    with gzip.open(os.path.join(base, "instance_types.json.gz")) as f:
        types = json.load(f)
    path = os.path.join(base, "instance_type_offerings", "availability-zone", f"{REGION}.json.gz")
    with gzip.open(path) as f:
        offerings = json.load(f)
    zones = [
        {"name": z.name, "id": z.zone_id}
        for z in RegionsAndZonesBackend.zones[REGION]
    ]
    return moto.__version__, types, offerings, zones


def read_csv(path, columns):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            fail(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            row["_line"] = lineno
            rows.append(row)
        return rows


def as_int(path, row, col):
    try:
        return int(row[col])
    except (TypeError, ValueError):
        fail(f"{path}:{row['_line']}: column {col}: {row[col]!r} is not an integer")


def accel(a, memory_key="MemoryInfo"):
    return {
        "name": a.get("Name", ""),
        "manufacturer": a.get("Manufacturer", ""),
        "count": int(a.get("Count", 0)),
        "memory_mib": int((a.get(memory_key) or {}).get("SizeInMiB", 0)),
    }


def spec(t):
    net = t.get("NetworkInfo", {})
    storage = t.get("InstanceStorageInfo")
    nvme = None
    if storage and storage.get("NvmeSupport", "unsupported") != "unsupported":
        nvme = int(storage.get("TotalSizeInGB", 0))
    ebs = (t.get("EbsInfo", {}).get("EbsOptimizedInfo") or {}).get("MaximumBandwidthInMbps", 0)
    cards = net.get("NetworkCards", [])
    bandwidth = round(sum(c.get("BaselineBandwidthInGbps", 0) for c in cards) * 1000)
    proc = t.get("ProcessorInfo", {})
    clock = proc.get("SustainedClockSpeedInGhz")
    return {
        "name": t["InstanceType"],
        "vcpus": int(t["VCpuInfo"]["DefaultVCpus"]),
        "memory_mib": int(t["MemoryInfo"]["SizeInMiB"]),
        "architectures": list(proc.get("SupportedArchitectures", [])),
        "hypervisor": t.get("Hypervisor"),
        "bare_metal": bool(t.get("BareMetal", False)),
        "cpu_manufacturer": proc.get("Manufacturer"),
        "sustained_clock_mhz": round(clock * 1000) if clock else None,
        "gpus": [accel(g) for g in (t.get("GpuInfo") or {}).get("Gpus", [])],
        "inference_accelerators": [
            accel(a) for a in (t.get("InferenceAcceleratorInfo") or {}).get("Accelerators", [])
        ],
        "neuron_devices": [
            {
                "name": d.get("Name", ""),
                "count": int(d.get("Count", 0)),
                "cores_per_device": int((d.get("CoreInfo") or {}).get("Count", 0)),
                "memory_mib": int((d.get("MemoryInfo") or {}).get("SizeInMiB", 0)),
            }
            for d in (t.get("NeuronInfo") or {}).get("NeuronDevices", [])
        ],
        "local_nvme_gb": nvme,
        "network_bandwidth_mbps": int(bandwidth),
        "ebs_bandwidth_mbps": int(ebs),
        "efa_max": int((net.get("EfaInfo") or {}).get("MaximumEfaInterfaces", 0)),
        "max_enis": int(net.get("MaximumNetworkInterfaces", 0)),
        "ipv4_per_eni": int(net.get("Ipv4AddressesPerInterface", 0)),
        "encryption_in_transit": bool(net.get("EncryptionInTransitSupported", False)),
        "usage_classes": sorted(t.get("SupportedUsageClasses", [])),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "aws"), help="folder of the price and ENI tables (data/aws)")
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "catalog", f"{REGION}.json"))
    ap.add_argument("--no-cargo", action="store_true", help="write the JSON only")
    args = ap.parse_args()

    moto_version, types, offerings, zones = load_moto()
    prices_path = os.path.join(args.data, "ec2-on-demand-prices-us-east-1.csv")
    eni_path = os.path.join(args.data, "ec2-eni-limits.csv")
    prices = {}
    for r in read_csv(prices_path, ["instance_type", "on_demand_usd_per_hour"]):
        try:
            prices[r["instance_type"]] = float(r["on_demand_usd_per_hour"])
        except ValueError:
            fail(f"{prices_path}:{r['_line']}: price {r['on_demand_usd_per_hour']!r} is not a number")
    eni = []
    for r in read_csv(eni_path, ["instance_type", "max_network_interfaces", "ipv4_per_interface",
                                 "trunking_compatible", "branch_interfaces", "hypervisor", "bare_metal"]):
        eni.append({
            "instance_type": r["instance_type"],
            "max_enis": as_int(eni_path, r, "max_network_interfaces"),
            "ipv4_per_eni": as_int(eni_path, r, "ipv4_per_interface"),
            "trunking": r["trunking_compatible"] == "true",
            "branch_enis": as_int(eni_path, r, "branch_interfaces"),
            "hypervisor": r["hypervisor"],
            "bare_metal": r["bare_metal"] == "true",
        })

    type_zones = {}
    for o in offerings:
        type_zones.setdefault(o["InstanceType"], set()).add(o["Location"])
    zone_names = [z["name"] for z in zones]
    unknown = {z for s in type_zones.values() for z in s} - set(zone_names)
    if unknown:
        fail(f"moto offerings name zones {sorted(unknown)} missing from its zone table")

    out = {
        "region": REGION,
        "source": (
            f"moto {moto_version} instance_types.json + {REGION} offerings; "
            "ec2-on-demand-prices-us-east-1.csv (AWS public prices via Karpenter's pricing table, July 2026); "
            "ec2-eni-limits.csv"
        ),
        "zones": zones,
        "specs": [spec(types[k]) for k in sorted(types)],
        "eni": sorted(eni, key=lambda r: r["instance_type"]),
        "prices": sorted(prices.items()),
        "type_zones": {k: sorted(v, key=zone_names.index) for k, v in sorted(type_zones.items())},
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=False)
        f.write("\n")
    print(f"gen-catalog: wrote {args.out}: {len(out['specs'])} types, {len(prices)} prices, {len(eni)} ENI rows")
    if not args.no_cargo:
        postcard = os.path.splitext(args.out)[0] + ".postcard"
        built = os.path.splitext(args.out)[0] + ".catalog.postcard"
        cmd = ["cargo", "run", "--quiet", "--", "catalog", "generate", "--input", args.out,
               "--output", postcard, "--catalog-output", built]
        print("gen-catalog: " + " ".join(cmd))
        subprocess.run(cmd, cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
