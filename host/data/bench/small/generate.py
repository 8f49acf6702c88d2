#!/usr/bin/env python3
"""Generates the small mixed-batch workloads (2-29 pods, 2-5 shapes, eight kinds of NodePool
requirements) and proves each one's optimum with an integer program solved by HiGHS (scipy.optimize.milp),
independently of Kestrel's own solver: nodes j = 1..pods (each pod alone is always feasible), y[j,t] = 1
if node j is of type t, x[s,j] = pods of shape s on node j;
min sum price_t y[j,t]  s.t.  sum_t y[j,t] <= 1,  sum_j x[s,j] = count_s,
sum_s demand_s[r] x[s,j] <= sum_t alloc_t[r] y[j,t] for r in cpu, memory, pods, and x[s,j] <= count_s * sum_{t
where s fits alone} y[j,t]; types dominated by a cheaper-or-equal one with at least the allocatable of every
resource are left out (they never make a packing cheaper). Also writes the fluid LP bound.

Usage: python3 generate.py   (needs numpy and scipy; writes NN-*.json next to this file)
"""
import json
import os
import random

import numpy as np
from scipy.optimize import LinearConstraint, linprog, milp, Bounds

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..")
TYPES = json.load(open(os.path.join(DATA, "ec2-instance-types.json")))["instanceTypes"]
PRICES = json.load(open(os.path.join(DATA, "ec2-on-demand-prices-us-east-1.json")))["onDemand"]

UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def cpu_millis(q):
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


def mem_bytes(q):
    for suffix, mult in UNITS.items():
        if q.endswith(suffix):
            return int(q[: -len(suffix)]) * mult
    return int(q)


def matches(req, labels):
    v = labels.get(req["key"])
    op = req["operator"]
    if op == "In":
        return v in req["values"]
    if op == "NotIn":
        return v not in req["values"]
    if op == "Exists":
        return v is not None
    if op == "DoesNotExist":
        return v is None
    if op == "Gt":
        return v is not None and int(v) > int(req["values"][0])
    if op == "Lt":
        return v is not None and int(v) < int(req["values"][0])
    raise ValueError(op)


def r(key, op, *values):
    return {"key": key, "operator": op, "values": list(values)}


CAT, FAM, GEN = "karpenter.k8s.aws/instance-category", "karpenter.k8s.aws/instance-family", "karpenter.k8s.aws/instance-generation"
CPU, SIZE, ARCH = "karpenter.k8s.aws/instance-cpu", "karpenter.k8s.aws/instance-size", "kubernetes.io/arch"
POOLS = [
    ("m5", [r(FAM, "In", "m5")]),
    ("cmr-gen5", [r(CAT, "In", "c", "m", "r"), r(GEN, "Gt", "4"), r(ARCH, "In", "amd64")]),
    ("c5-m5-r5", [r(FAM, "In", "c5", "m5", "r5")]),
    ("arm-cmr", [r(CAT, "In", "c", "m", "r"), r(ARCH, "In", "arm64")]),
    ("m-under-17-cpu", [r(CAT, "In", "m"), r(CPU, "Lt", "17"), r(ARCH, "In", "amd64")]),
    ("sizes-l-xl-2xl", [r(CAT, "In", "c", "m", "r"), r(SIZE, "In", "large", "xlarge", "2xlarge")]),
    ("t3", [r(FAM, "In", "t3")]),
    ("cmr-gen6", [r(CAT, "In", "c", "m", "r"), r(GEN, "Gt", "5")]),
]
CPUS = ["100m", "250m", "500m", "1", "1500m", "2", "3", "4"]
MEMS = ["128Mi", "256Mi", "512Mi", "1Gi", "2Gi", "4Gi", "8Gi", "12Gi"]


def allowed_types(reqs):
    out = []
    for t in TYPES:
        if t["name"] not in PRICES or not all(matches(q, t["labels"]) for q in reqs):
            continue
        a = t["allocatable"]
        out.append((t["name"], PRICES[t["name"]], (cpu_millis(a["cpu"]), mem_bytes(a["memory"]), int(a["pods"]))))
    return out


def undominated(types, shapes):
    useful = [t for t in types if any(all(s[k] <= t[2][k] for k in range(3)) for s, _ in shapes)]
    keep = []
    for t in sorted(useful, key=lambda t: (t[1], t[0])):
        if not any(k[1] <= t[1] and all(k[2][d] >= t[2][d] for d in range(3)) for k in keep):
            keep.append(t)
    return keep


def fluid(types, shapes):
    demand = [sum(s[d] * n for s, n in shapes) for d in range(3)]
    c = [t[1] for t in types]
    A = [[-t[2][d] for t in types] for d in range(3)]
    res = linprog(c, A_ub=A, b_ub=[-x for x in demand], bounds=(0, None), method="highs")
    return res.fun


def exact(types, shapes):
    S, T, N = len(shapes), len(types), sum(n for _, n in shapes)
    ny = N * T
    nvar = ny + S * N
    yi = lambda j, t: j * T + t
    xi = lambda s, j: ny + s * N + j
    c = np.zeros(nvar)
    for j in range(N):
        for t in range(T):
            c[yi(j, t)] = types[t][1]
    rows, lo, hi = [], [], []
    def row(coefs, l, h):
        v = np.zeros(nvar)
        for i, a in coefs:
            v[i] += a
        rows.append(v); lo.append(l); hi.append(h)
    for j in range(N):
        row([(yi(j, t), 1) for t in range(T)], 0, 1)
        for d in range(3):
            row([(xi(s, j), shapes[s][0][d]) for s in range(S)] + [(yi(j, t), -types[t][2][d]) for t in range(T)], -np.inf, 0)
        for s in range(S):
            fit = [t for t in range(T) if all(shapes[s][0][d] <= types[t][2][d] for d in range(3))]
            row([(xi(s, j), 1)] + [(yi(j, t), -shapes[s][1]) for t in fit], -np.inf, 0)
        if j + 1 < N:  # symmetry: nodes by non-increasing price
            row([(yi(j, t), types[t][1]) for t in range(T)] + [(yi(j + 1, t), -types[t][1]) for t in range(T)], 0, np.inf)
    for s in range(S):
        row([(xi(s, j), 1) for j in range(N)], shapes[s][1], shapes[s][1])
    ub = np.array([1.0] * ny + [float(shapes[s][1]) for s in range(S) for _ in range(N)])
    res = milp(c, constraints=LinearConstraint(np.array(rows), lo, hi), integrality=np.ones(nvar),
               bounds=Bounds(np.zeros(nvar), ub), options={"time_limit": 300})
    assert res.status == 0, res.message  # 0: proven optimal
    mix = {}
    for j in range(N):
        for t in range(T):
            if res.x[yi(j, t)] > 0.5:
                mix[types[t][0]] = mix.get(types[t][0], 0) + 1
    return res.fun, sorted(mix.items())


def main():
    rng = random.Random(14)
    for n in range(40):
        pool_name, reqs = POOLS[n % len(POOLS)]
        types = allowed_types(reqs)
        while True:
            k = rng.randint(2, 5)
            specs = {}
            while len(specs) < k:
                cpu, mem = rng.choice(CPUS), rng.choice(MEMS)
                specs[(cpu, mem)] = rng.randint(1, 8)
            total = sum(specs.values())
            shapes = [((cpu_millis(c), mem_bytes(m), 1), cnt) for (c, m), cnt in specs.items()]
            fits_all = all(any(all(s[d] <= t[2][d] for d in range(3)) for t in types) for s, _ in shapes)
            if 2 <= total <= 29 and fits_all:
                break
        kept = undominated(types, shapes)
        optimum, mix = exact(kept, shapes)
        workload = {
            "name": f"small-{n:02d}-{pool_name}",
            "description": f"small mixed batch: {total} pods, {len(specs)} shapes, NodePool {pool_name}",
            "region": "us-east-1",
            "nodePool": {"requirements": reqs + [r("karpenter.sh/capacity-type", "In", "on-demand")]},
            "pods": [
                {"name": f"svc{i}", "count": cnt, "requests": {"cpu": c, "memory": m}}
                for i, ((c, m), cnt) in enumerate(specs.items())
            ],
            "lowerBound": {
                "fluidLpUsdPerHour": round(fluid(kept, shapes), 6),
                "exactOptimumUsdPerHour": round(optimum, 6),
                "allowedInstanceTypes": len(types),
                "method": "integer program over node slots x instance types (HiGHS via scipy.optimize.milp, proven optimal), see generate.py",
                "exactMix": mix,
            },
        }
        with open(os.path.join(HERE, f"{workload['name']}.json"), "w") as f:
            json.dump(workload, f, indent=1)
            f.write("\n")
        print(workload["name"], total, len(specs), round(optimum, 4), mix, flush=True)


if __name__ == "__main__":
    main()
