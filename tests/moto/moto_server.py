#!/usr/bin/env python3
"""nodewright's launcher for moto's EC2 server, used by the Rust test harness.

Starts moto's server on 127.0.0.1:PORT after patching CreateFleet so that it
refuses configured pools the way EC2 does when it has no capacity: the refused
overrides are skipped and reported in the fleet's `Errors` with
`InsufficientInstanceCapacity`, and the first remaining override (in request
order, as moto always fills from the first) is launched. When every override
is refused, no instance is launched and only `Errors` is returned.

Usage: moto_server.py PORT [REFUSED_JSON]
The refused-pools file (argument, else $NODEWRIGHT_MOTO_REFUSED) is re-read on
every CreateFleet, so a test can change it between calls. Its content is a JSON
list of objects: {"instance_type": "m5.large", "zone": "us-east-1a",
"capacity_type": "on-demand"|"spot" (optional: both when absent)}. With
"limit": N the pool is not refused but fills partly: a fleet gets at most N
instances of it, and the rest of what it asked of that pool is reported in
`Errors` as refused (a partly fulfilled instant fleet).
A missing or empty file refuses nothing.

SSM: PutParameter also accepts names under /aws/service/eks/ and
/aws/service/bottlerocket/, the public parameters AWS publishes for EKS
images. Real SSM (and moto) refuse those names to an account, and moto ships
none of them, so a test creates the ones it needs this way and nodewright
reads them with GetParameters exactly as it reads AWS's.
"""

import json
import os
import sys

from moto.core.responses import ActionResult
from moto.ec2.models import fleets as fleet_models
from moto.ec2.responses import fleets as fleet_responses
from moto.ssm.models import SimpleSystemManagerBackend

REFUSED_PATH = None


def _refused():
    """Reads the refused pools afresh; a malformed file is a loud error."""
    if not REFUSED_PATH or not os.path.exists(REFUSED_PATH):
        return []
    with open(REFUSED_PATH, encoding="utf-8") as f:
        text = f.read()
    if not text.strip():
        return []
    pools = json.loads(text)
    if not isinstance(pools, list):
        raise ValueError(f"{REFUSED_PATH}: expected a JSON list of pools")
    return pools


def _zone_of(fleet, spec):
    if not spec.subnet_id:
        return None
    return fleet.ec2_backend.get_subnet(spec.subnet_id).availability_zone


def _matches(p, instance_type, zone, lifecycle):
    if p.get("instance_type") != instance_type or p.get("zone") != zone:
        return False
    ct = p.get("capacity_type")
    return ct is None or ct == lifecycle


def _is_refused(pools, instance_type, zone, lifecycle):
    return any(
        "limit" not in p and _matches(p, instance_type, zone, lifecycle) for p in pools
    )


def _limit(pools, instance_type, zone, lifecycle):
    """At most this many instances of the pool per fleet (None: no limit)."""
    for p in pools:
        if "limit" in p and _matches(p, instance_type, zone, lifecycle):
            return int(p["limit"])
    return None


def _capacity_error(spec, lifecycle, zone):
    return {
        "LaunchTemplateAndOverrides": {
            "LaunchTemplateSpecification": spec.launch_template_spec,
            "Overrides": dict(spec.overrides or {}),
        },
        "Lifecycle": lifecycle,
        "ErrorCode": "InsufficientInstanceCapacity",
        "ErrorMessage": (
            "We currently do not have sufficient "
            f"{spec.instance_type} capacity in the Availability Zone "
            f"you requested ({zone}). (refused by nodewright's moto launcher)"
        ),
    }


_orig_counts = fleet_models.Fleet.get_launch_spec_counts
_orig_spot = fleet_models.Fleet.create_spot_requests
_orig_od = fleet_models.Fleet.create_on_demand_requests


def _counts(self, weight_to_add):
    """Like moto's, but over the overrides that are not refused."""
    lifecycle = getattr(self, "_nw_lifecycle", "on-demand")
    pools = _refused()
    allowed = []
    for spec in self.launch_specs:
        zone = _zone_of(self, spec)
        if _is_refused(pools, spec.instance_type, zone, lifecycle):
            self._nw_errors.append(_capacity_error(spec, lifecycle, zone))
        else:
            allowed.append(spec)
    if not allowed:
        return {}, weight_to_add  # nothing launched; the caller sees only Errors
    saved = self.launch_specs
    self.launch_specs = allowed
    try:
        counts, weight = _orig_counts(self, weight_to_add)
    finally:
        self.launch_specs = saved
    # A pool with a limit fills partly: up to the limit, the rest refused.
    for spec, n in list(counts.items()):
        zone = _zone_of(self, spec)
        limit = _limit(pools, spec.instance_type, zone, lifecycle)
        if limit is not None and n > limit:
            self._nw_errors.append(_capacity_error(spec, lifecycle, zone))
            weight -= (n - limit) * spec.weighted_capacity
            if limit > 0:
                counts[spec] = limit
            else:
                del counts[spec]
    return counts, weight


def _spot(self, weight_to_add):
    self._nw_lifecycle = "spot"
    return _orig_spot(self, weight_to_add)


def _od(self, weight_to_add):
    self._nw_lifecycle = "on-demand"
    return _orig_od(self, weight_to_add)


_orig_init = fleet_models.Fleet.__init__


def _init(self, *args, **kwargs):
    self._nw_errors = []
    _orig_init(self, *args, **kwargs)


fleet_models.Fleet.__init__ = _init
fleet_models.Fleet.get_launch_spec_counts = _counts
fleet_models.Fleet.create_spot_requests = _spot
fleet_models.Fleet.create_on_demand_requests = _od

_orig_create_fleet = fleet_responses.Fleets.create_fleet


def _create_fleet(self):
    result = _orig_create_fleet(self)
    body = dict(result.result)
    fleet = self.ec2_backend.get_fleet(body["FleetId"])
    errors = getattr(fleet, "_nw_errors", [])
    if errors:
        body["Errors"] = errors
    return ActionResult(body)


fleet_responses.Fleets.create_fleet = _create_fleet


_PUBLIC_PARAMETERS = ("/aws/service/eks/", "/aws/service/bottlerocket/")
_orig_put_parameter = SimpleSystemManagerBackend.put_parameter


def _put_parameter(self, name, *args, **kwargs):
    """Stores a public EKS image parameter under its own name (see the docstring)."""
    if not name.startswith(_PUBLIC_PARAMETERS):
        return _orig_put_parameter(self, name, *args, **kwargs)
    stand_in = "/nodewright-public" + name
    param = _orig_put_parameter(self, stand_in, *args, **kwargs)
    versions = self._parameters.pop(stand_in)
    for v in versions:
        v.name = name
    self._parameters[name] = versions
    return param


SimpleSystemManagerBackend.put_parameter = _put_parameter


def main():
    global REFUSED_PATH
    if len(sys.argv) < 2:
        sys.exit("usage: moto_server.py PORT [REFUSED_JSON]")
    port = sys.argv[1]
    REFUSED_PATH = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("NODEWRIGHT_MOTO_REFUSED")
    from moto.server import main as moto_main

    # Exit with the test process that started us, even if it never gets to kill us
    # (a static harness is never dropped; a panic may abort).
    parent = os.getppid()

    def watch():
        import time

        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    import threading

    threading.Thread(target=watch, daemon=True).start()

    moto_main(["-H", "127.0.0.1", "-p", port])


if __name__ == "__main__":
    main()
