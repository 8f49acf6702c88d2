"""Helm's own engine (helm-python-sdk embeds Helm v4) for the chart tests: no registry here ships the
`helm` command. Reads {"chart", "values", "name", "namespace"} as JSON on stdin and prints JSON:
  render -> {"manifests": {template path: text}, "crds": [text]}   or {"error": "..."}
  lint   -> Helm's lint result {"messages": [...], "errors": [...]}
"""
import json
import sys

from helm_python.chart import Chart, lint

request = json.load(sys.stdin)
mode = sys.argv[1]
if mode == "render":
    try:
        chart = Chart.load(request["chart"])
        manifests = chart.render(
            request.get("values") or {},
            name=request.get("name", "kestrel"),
            namespace=request.get("namespace", "kestrel"),
            is_install=True,
        )
        crds = [c["data"] if isinstance(c, dict) else str(c) for c in (chart.crds or [])]
        print(json.dumps({"manifests": manifests, "crds": crds}))
    except Exception as error:  # Helm's render and values errors are the answer, not a crash
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
elif mode == "lint":
    values = request.get("values") or {}
    # Lint against the Kubernetes version the values target (deprecations are judged by it).
    kube_version = values.get("kubeVersion") or None
    print(json.dumps(lint(request["chart"], values, strict=True, kube_version=kube_version), default=str))
else:
    sys.exit(f"unknown mode {mode}")
