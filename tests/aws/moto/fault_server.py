"""moto's own server app behind a fault-injecting WSGI layer, for Kestrel's AWS test suites.

moto models the APIs' shapes but not capacity or rate limits: its CreateFleet never reports
per-override errors and nothing ever throttles. This layer lets a test arm such faults over a small
HTTP control endpoint, and answers them in the real wire shapes (EC2 query error XML, CreateFleet
`errorSet`, AWS JSON errors), so the SDK's own parsing and retry logic is what the tests exercise.

Control endpoint (JSON bodies):
  POST   /_faults  {"errors": [rule...], "ice": [rule...]}   adds rules
  DELETE /_faults                                            removes every rule
  GET    /_faults                                            rules, per-action call counts and
                                                             each action's last request parameters

An error rule: {"action": "DescribeInstances", "code": "RequestLimitExceeded", "status": 503,
"message": "...", "times": N (default: every call), "after": K (let K matching calls through first)}.
An ICE rule removes the matching CreateFleet overrides and reports them in `errorSet`:
{"instance_type": "m5.large", "capacity_type": "spot", "zone": "us-east-1a",
"code": "InsufficientInstanceCapacity"}; an absent field matches anything.

Started as `python fault_server.py` it binds 127.0.0.1 on a free port and prints `PORT <n>` once it
accepts connections (the harness reads that line instead of guessing a port).
"""

import io
import json
import re
import sys
import threading
import uuid
from urllib.parse import parse_qsl, urlencode

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.errors = []
        self.ice = []
        self.calls = {}
        self.last = {}

    def add(self, body):
        with self.lock:
            for rule in body.get("errors", []):
                rule.setdefault("after", 0)
                self.errors.append(rule)
            self.ice.extend(body.get("ice", []))

    def clear(self):
        with self.lock:
            self.errors.clear()
            self.ice.clear()

    def snapshot(self):
        with self.lock:
            return {
                "errors": list(self.errors),
                "ice": list(self.ice),
                "calls": dict(self.calls),
                "last": dict(self.last),
            }

    def count(self, action, params):
        with self.lock:
            self.calls[action] = self.calls.get(action, 0) + 1
            self.last[action] = dict(params)

    def take_error(self, action):
        """The error rule this call trips, consuming one of its `times`."""
        with self.lock:
            for rule in self.errors:
                if rule.get("action") != action:
                    continue
                if rule["after"] > 0:
                    rule["after"] -= 1
                    continue
                times = rule.get("times")
                if times is not None:
                    if times <= 0:
                        continue
                    rule["times"] = times - 1
                return dict(rule)
            return None

    def ice_for(self, instance_type, capacity_type, zone):
        with self.lock:
            for rule in self.ice:
                if rule.get("instance_type") not in (None, instance_type):
                    continue
                if rule.get("capacity_type") not in (None, capacity_type):
                    continue
                if rule.get("zone") not in (None, zone):
                    continue
                return dict(rule)
            return None


def ec2_error(code, message, status):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )
    return status, [("Content-Type", "text/xml")], body.encode()


def json_error(code, message, status):
    body = json.dumps({"__type": code, "message": message})
    # SQS answers in JSON but its SDK still reads the legacy query code from this header.
    headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-query-error", f"{code};Sender")]
    return status, headers, body.encode()


def fleet_error_item(config, override, lifecycle, code, message):
    lt = "".join(
        f"<{tag}>{config[key]}</{tag}>"
        for key, tag in (
            ("LaunchTemplateSpecification.LaunchTemplateId", "launchTemplateId"),
            ("LaunchTemplateSpecification.LaunchTemplateName", "launchTemplateName"),
            ("LaunchTemplateSpecification.Version", "version"),
        )
        if key in config
    )
    fields = "".join(
        f"<{key[0].lower() + key[1:]}>{value}</{key[0].lower() + key[1:]}>"
        for key, value in override.items()
        if key in ("InstanceType", "SubnetId", "AvailabilityZone", "ImageId", "Priority")
    )
    return (
        "<item><launchTemplateAndOverrides>"
        f"<launchTemplateSpecification>{lt}</launchTemplateSpecification>"
        f"<overrides>{fields}</overrides></launchTemplateAndOverrides>"
        f"<lifecycle>{lifecycle}</lifecycle><errorCode>{code}</errorCode>"
        f"<errorMessage>{message}</errorMessage></item>"
    )


def split_fleet(params):
    """CreateFleet's form as (other params, [(config fields, [override fields])])."""
    configs = {}
    rest = []
    pattern = re.compile(r"^LaunchTemplateConfigs\.(\d+)\.(.+)$")
    for key, value in params:
        m = pattern.match(key)
        if not m:
            rest.append((key, value))
            continue
        index, field = int(m.group(1)), m.group(2)
        config = configs.setdefault(index, ({}, {}))
        o = re.match(r"^Overrides\.(\d+)\.(.+)$", field)
        if o:
            config[1].setdefault(int(o.group(1)), {})[o.group(2)] = value
        else:
            config[0][field] = value
    return rest, [(configs[i][0], [configs[i][1][j] for j in sorted(configs[i][1])]) for i in sorted(configs)]


def join_fleet(rest, configs):
    params = list(rest)
    for i, (fields, overrides) in enumerate(configs, start=1):
        params += [(f"LaunchTemplateConfigs.{i}.{k}", v) for k, v in fields.items()]
        for j, override in enumerate(overrides, start=1):
            params += [(f"LaunchTemplateConfigs.{i}.Overrides.{j}.{k}", v) for k, v in override.items()]
    return params


class FaultLayer:
    def __init__(self, app):
        self.app = app
        self.faults = Faults()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/_faults":
            return self.control(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            action, params, query = target.rsplit(".", 1)[-1], [], False
        else:
            params = parse_qsl(raw.decode(), keep_blank_values=True)
            if not params and environ.get("QUERY_STRING"):
                params = parse_qsl(environ["QUERY_STRING"], keep_blank_values=True)
            action, query = dict(params).get("Action"), True
        if action is None:
            return self.app(environ, start_response)
        self.faults.count(action, params)
        rule = self.faults.take_error(action)
        if rule is not None:
            code, message = rule["code"], rule.get("message", f"fault armed for {action}")
            status = int(rule.get("status", 400))
            answer = (ec2_error if query else json_error)(code, message, status)
            return self.respond(start_response, *answer)
        if query and action == "CreateFleet":
            return self.create_fleet(environ, start_response, params)
        return self.app(environ, start_response)

    def create_fleet(self, environ, start_response, params):
        rest, configs = split_fleet(params)
        lifecycle = dict(rest).get("TargetCapacitySpecification.DefaultTargetCapacityType", "on-demand")
        kept, errors = [], []
        for fields, overrides in configs:
            left = []
            for override in overrides:
                rule = self.faults.ice_for(
                    override.get("InstanceType"), lifecycle, override.get("AvailabilityZone")
                )
                if rule is None:
                    left.append(override)
                else:
                    code = rule.get("code", "InsufficientInstanceCapacity")
                    message = rule.get("message", "There is no capacity for this instance type in this zone.")
                    errors.append(fleet_error_item(fields, override, lifecycle, code, message))
            if left:
                kept.append((fields, left))
        if not errors:
            return self.app(environ, start_response)
        error_set = "<errorSet>" + "".join(errors) + "</errorSet>"
        if not kept:
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?><CreateFleetResponse xmlns="{EC2_NS}">'
                f"<requestId>{uuid.uuid4()}</requestId><fleetId>fleet-{uuid.uuid4().hex[:17]}</fleetId>"
                f"{error_set}<fleetInstanceSet/></CreateFleetResponse>"
            )
            return self.respond(start_response, 200, [("Content-Type", "text/xml")], body.encode())
        body = urlencode(join_fleet(rest, kept)).encode()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        answer = b"".join(self.app(environ, capture)).decode()
        # moto writes no errorSet of its own (or an empty one): ours replaces it.
        answer = re.sub(r"<errorSet\s*/>|<errorSet>\s*</errorSet>", "", answer)
        answer = answer.replace("</CreateFleetResponse>", error_set + "</CreateFleetResponse>")
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        status = int(captured["status"].split()[0])
        return self.respond(start_response, status, headers, answer.encode())

    def control(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            self.faults.add(json.loads(environ["wsgi.input"].read(length) or b"{}"))
        elif method == "DELETE":
            self.faults.clear()
        body = json.dumps(self.faults.snapshot()).encode()
        return self.respond(start_response, 200, [("Content-Type", "application/json")], body)

    @staticmethod
    def respond(start_response, status, headers, body):
        reasons = {200: "OK", 400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}
        start_response(
            f"{status} {reasons.get(status, 'Error')}", headers + [("Content-Length", str(len(body)))]
        )
        return [body]


class QuietHandler(WSGIRequestHandler):
    """One line per request would drown the test output; errors still reach stderr."""

    def log_request(self, code="-", size="-"):
        pass


def main():
    app = FaultLayer(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
