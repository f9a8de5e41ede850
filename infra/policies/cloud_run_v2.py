"""Custom checkov policies for google_cloud_run_v2_service (checkov ships none for the v2 API).

Run with: checkov -d infra --external-checks-dir infra/policies
Each check reads the resource as checkov renders it: every attribute is a list, blocks are lists
of dicts, and values that stay unresolved remain strings such as "${var.x}".
"""

from __future__ import annotations

import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

SERVICE = ("google_cloud_run_v2_service",)
PUBLIC = {"allUsers", "allAuthenticatedUsers"}
SECRET_NAME = re.compile(r"(API_?KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY)", re.I)


def first(value: Any) -> Any:
    """checkov wraps every attribute in a list; unwrap one level."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def blocks(conf: dict, *path: str) -> list[dict]:
    """All blocks at path (each level may repeat), e.g. blocks(conf, "template", "containers")."""
    current = [conf]
    for key in path:
        found = []
        for item in current:
            value = item.get(key, []) if isinstance(item, dict) else []
            for v in value if isinstance(value, list) else [value]:
                found.extend(v if isinstance(v, list) else [v])
        current = [v for v in found if isinstance(v, dict)]
    return current


def node_selectors(conf: dict) -> list[dict]:
    """The template's node_selector blocks. checkov renders a `dynamic` block's content even when
    its for_each evaluated to an empty list; such a block is absent in Terraform's plan."""
    for template in blocks(conf, "template"):
        for dynamic in template.get("dynamic", []) or []:
            spec = dynamic.get("node_selector") if isinstance(dynamic, dict) else None
            if spec is not None and spec.get("for_each") == []:
                return []
    return blocks(conf, "template", "node_selector")


def env_vars(container: dict) -> list[dict]:
    return blocks(container, "env")


def unresolved(value: Any) -> bool:
    """True when checkov could not evaluate the expression (a variable it cannot see, an optional()
    default it does not apply): such a value is judged UNKNOWN, never PASSED or FAILED."""
    value = first(value)
    return value is None or isinstance(value, (dict, list)) or (isinstance(value, str) and ("${" in value or value.startswith(("var.", "local."))))


def truthy(value: Any) -> bool:
    value = first(value)
    return value is True or str(value).lower() == "true"


def memory_gib(value: Any) -> float | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Gi|Mi|G|M)", str(first(value)))
    if not match:
        return None
    number, unit = float(match[1]), match[2]
    return {"Gi": number, "G": number * 1e9 / 2**30, "Mi": number / 1024, "M": number * 1e6 / 2**30}[unit]


class CloudRunV2Check(BaseResourceCheck):
    def __init__(self, name: str, id: str, resources=SERVICE) -> None:
        super().__init__(name=name, id=id, categories=(CheckCategories.GENERAL_SECURITY,), supported_resources=resources)


class GpuResources(CloudRunV2Check):
    """A GPU revision asks for one GPU Cloud Run offers, at least that GPU's CPU and memory, and instance-based
    billing (https://cloud.google.com/run/docs/configuring/services/gpu: the L4 needs 4 CPU and 16 GiB, the
    RTX PRO 6000 Blackwell 20 CPU and 80 GiB)."""

    # accelerator -> (minimum CPU, minimum GiB)
    MINIMUMS = {"nvidia-l4": (4, 16), "nvidia-rtx-pro-6000": (20, 80)}

    def __init__(self) -> None:
        super().__init__("Cloud Run v2 GPU service has one L4 or RTX PRO 6000, at least its minimum CPU and memory, and cpu_idle = false", "CKV_YOLO_1")

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        selectors = node_selectors(conf)
        if not selectors:
            return CheckResult.UNKNOWN  # not a GPU service
        accelerator = first(selectors[0].get("accelerator"))
        if unresolved(accelerator) or not re.fullmatch(r"[a-z0-9-]+", str(accelerator)):
            return CheckResult.UNKNOWN  # an expression checkov could not evaluate
        if accelerator == "none":
            return CheckResult.UNKNOWN  # a CPU service that checkov rendered a dynamic selector for
        if accelerator not in self.MINIMUMS:
            return CheckResult.FAILED
        min_cpu, min_gib = self.MINIMUMS[accelerator]
        for container in blocks(conf, "template", "containers"):
            for resources in blocks(container, "resources"):
                limits = first(resources.get("limits")) or {}
                if not isinstance(limits, dict) or any(unresolved(limits.get(k)) for k in ("cpu", "memory", "nvidia.com/gpu")):
                    return CheckResult.UNKNOWN
                cpu = str(first(limits.get("cpu", "")))
                if str(first(limits.get("nvidia.com/gpu", ""))) != "1":
                    return CheckResult.FAILED
                if not cpu.isdigit() or int(cpu) < min_cpu:
                    return CheckResult.FAILED
                gib = memory_gib(limits.get("memory", ""))
                if gib is None or gib < min_gib:
                    return CheckResult.FAILED
                if truthy(resources.get("cpu_idle", [True])):
                    return CheckResult.FAILED
                return CheckResult.PASSED
        return CheckResult.FAILED


class IngressPortProtocol(CloudRunV2Check):
    """The ingress container's port is named h2c (HTTP/2 end to end, no 32 MiB request cap) or http1; any other
    name is refused by Cloud Run (https://cloud.google.com/run/docs/configuring/http2)."""

    def __init__(self) -> None:
        super().__init__("Cloud Run v2 service names its container port h2c or http1", "CKV_YOLO_8")

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        ports = [p for c in blocks(conf, "template", "containers") for p in blocks(c, "ports")]
        if not ports:
            return CheckResult.UNKNOWN  # Cloud Run's default port (8080, http1)
        for port in ports:
            name = first(port.get("name"))
            if name is None:
                continue  # Cloud Run's default name, http1
            if unresolved(name) or not re.fullmatch(r"[a-z0-9-]+", str(name)):
                return CheckResult.UNKNOWN  # an expression checkov could not (fully) evaluate
            if name not in ("h2c", "http1"):
                return CheckResult.FAILED
        return CheckResult.PASSED


class Probes(CloudRunV2Check):
    """Traffic only after an HTTP startup probe passes; a liveness probe restarts a wedged instance.
    Only the ingress container (the one with ports) serves requests; sidecars need no probes."""

    def __init__(self) -> None:
        super().__init__("Cloud Run v2 service has HTTP startup and liveness probes", "CKV_YOLO_2")

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        containers = blocks(conf, "template", "containers")
        ingress = [c for c in containers if blocks(c, "ports")]
        containers = ingress or containers[:1]
        if not containers:
            return CheckResult.FAILED
        for container in containers:
            if not blocks(container, "startup_probe", "http_get") or not blocks(container, "liveness_probe", "http_get"):
                return CheckResult.FAILED
            for probe in blocks(container, "startup_probe"):
                period, threshold = first(probe.get("period_seconds", [10])), first(probe.get("failure_threshold", [3]))
                if isinstance(period, (int, float)) and isinstance(threshold, (int, float)) and period * threshold > 240:
                    return CheckResult.FAILED  # Cloud Run rejects a startup window over 240 s
        return CheckResult.PASSED


class DedicatedServiceAccount(CloudRunV2Check):
    """Never the Compute Engine default account (Editor on the whole project in many projects)."""

    def __init__(self) -> None:
        super().__init__("Cloud Run v2 service runs as a dedicated service account", "CKV_YOLO_3")

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        templates = blocks(conf, "template")
        account = first(templates[0].get("service_account")) if templates else None
        if account and unresolved(account):
            return CheckResult.UNKNOWN
        if not account or str(account).endswith("-compute@developer.gserviceaccount.com"):
            return CheckResult.FAILED
        return CheckResult.PASSED


class NoSecretLiteralInEnv(CloudRunV2Check):
    """Secrets arrive from Secret Manager (value_source or a mounted file), never as literal env values."""

    def __init__(self) -> None:
        super().__init__("Cloud Run v2 service has no secret literal in its environment and does not disable auth", "CKV_YOLO_4")

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        for container in blocks(conf, "template", "containers"):
            for env in env_vars(container):
                name = str(first(env.get("name", "")))
                if name == "ALLOW_UNAUTHENTICATED" and truthy(env.get("value")):
                    return CheckResult.FAILED
                if SECRET_NAME.search(name) and not name.endswith("_FILE") and "value" in env and not env.get("value_source"):
                    return CheckResult.FAILED
        return CheckResult.PASSED


class PublicOnlyWithApiKeys(CloudRunV2Check):
    """invoker_iam_disabled opens the service to the internet: only with API keys mounted from Secret Manager."""

    def __init__(self) -> None:
        super().__init__("Cloud Run v2 service is public only when it requires API keys from Secret Manager", "CKV_YOLO_5")

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        if not truthy(conf.get("invoker_iam_disabled", [False])):
            return CheckResult.PASSED
        secret_volumes = {first(v.get("name")) for v in blocks(conf, "template", "volumes") if blocks(v, "secret")}
        for container in blocks(conf, "template", "containers"):
            names = {str(first(e.get("name", ""))) for e in env_vars(container)}
            mounts = {first(m.get("name")) for m in blocks(container, "volume_mounts")}
            if "API_KEYS_FILE" in names and mounts & secret_volumes:
                return CheckResult.PASSED
        return CheckResult.FAILED


class InvokerNotAllUsers(CloudRunV2Check):
    """The v2 twin of CKV_GCP_102: no allUsers/allAuthenticatedUsers invoker grant (use invoker_iam_disabled + API keys)."""

    def __init__(self) -> None:
        super().__init__(
            "Cloud Run v2 service IAM grants nothing to allUsers or allAuthenticatedUsers",
            "CKV_YOLO_6",
            resources=("google_cloud_run_v2_service_iam_member", "google_cloud_run_v2_service_iam_binding"),
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        members = conf.get("member", []) + [m for ms in conf.get("members", []) for m in (ms if isinstance(ms, list) else [ms])]
        return CheckResult.FAILED if PUBLIC & {str(m) for m in members} else CheckResult.PASSED


class CpuServiceHasNoGpu(CloudRunV2Check):
    """A CPU service (no accelerator selector) asks for no GPU, is billed per request, and has a
    CPU/memory pair Cloud Run accepts (https://cloud.google.com/run/docs/configuring/services/cpu)."""

    MEMORY_GIB = {"1": (0.5, 4), "2": (0.5, 8), "4": (2, 16), "6": (4, 24), "8": (4, 32)}

    def __init__(self) -> None:
        super().__init__("Cloud Run v2 CPU service has no GPU limit, request-based billing and a valid CPU/memory pair", "CKV_YOLO_7")

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        if node_selectors(conf):
            return CheckResult.UNKNOWN  # a GPU service: CKV_YOLO_1
        containers = blocks(conf, "template", "containers")
        ingress = [c for c in containers if blocks(c, "ports")] or containers[:1]
        for container in ingress:
            for resources in blocks(container, "resources"):
                limits = first(resources.get("limits"))
                if not isinstance(limits, dict) or any(unresolved(limits.get(k)) for k in ("cpu", "memory")):
                    return CheckResult.UNKNOWN
                if "nvidia.com/gpu" in limits and not unresolved(limits["nvidia.com/gpu"]) and str(first(limits["nvidia.com/gpu"])) != "0":
                    return CheckResult.FAILED
                if unresolved(resources.get("cpu_idle", [True])):
                    return CheckResult.UNKNOWN
                if not truthy(resources.get("cpu_idle", [True])):
                    return CheckResult.FAILED
                cpu, gib = str(first(limits["cpu"])), memory_gib(limits["memory"])
                low, high = self.MEMORY_GIB.get(cpu, (None, None))
                if low is None or gib is None or not low <= gib <= high:
                    return CheckResult.FAILED
                return CheckResult.PASSED
        return CheckResult.FAILED


gpu_resources = GpuResources()
ingress_port_protocol = IngressPortProtocol()
cpu_service_has_no_gpu = CpuServiceHasNoGpu()
probes = Probes()
dedicated_service_account = DedicatedServiceAccount()
no_secret_literal_in_env = NoSecretLiteralInEnv()
public_only_with_api_keys = PublicOnlyWithApiKeys()
invoker_not_all_users = InvokerNotAllUsers()
