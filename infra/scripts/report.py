#!/usr/bin/env python3
"""Print what a deployment serves, from `terraform output -json` (deploy.sh, promote.sh, rollback.sh).

    report.py OUTPUTS.json PROJECT SECRET

Standard library only: the scripts run on a laptop with gcloud and terraform, not in a virtualenv.
"""

from __future__ import annotations

import json
import sys


def traffic_line(targets: list[dict]) -> str:
    parts = []
    for t in targets:
        who = "latest revision" if t.get("type", "").endswith("_LATEST") else t.get("revision")
        parts.append(f"{t['percent']}% {who}" + (f" (tag {t['tag']})" if t.get("tag") else ""))
    return ", ".join(parts)


# What people call each accelerator value (infra/locals.tf local.accelerators).
LABELS = {"none": "CPU", "nvidia-l4": "NVIDIA L4", "nvidia-rtx-pro-6000": "NVIDIA RTX PRO 6000"}


def label(accelerator: str) -> str:
    return LABELS.get(accelerator, accelerator)


def wss(url: str) -> str:
    """A service's https:// URL as the wss:// one a WebSocket client opens (http:// as ws://)."""
    return "ws" + url.removeprefix("http") if url.startswith("http") else url


def report(outputs: dict, project: str, secret: str) -> str:
    urls = outputs.get("endpoint_urls") or {}
    regions = outputs.get("regions") or {}
    traffic = outputs.get("traffic") or {}
    lines = ["", "Endpoints:"]
    for region, url in sorted(urls.items()):
        kind = label((regions.get(region) or {}).get("accelerator", "none"))
        lines.append(f"  {region:<24} {kind:<20} {url}")
        if region in traffic:
            lines.append(f"  {'':<24} {'':<20} traffic: {traffic_line(traffic[region])}")
    for region in outputs.get("stopped_regions") or []:
        lines.append(f"  {region:<24} stopped (make start REGION={region})")
    canary = {r: u for r, u in (outputs.get("canary_urls") or {}).items() if u}
    if canary:
        lines.append("\nCanary (new release only), until make promote or make rollback:")
        lines += [f"  {region:<24} {url}" for region, url in sorted(canary.items())]
    if outputs.get("load_balancer_url"):
        lines.append(f"  {'all regions':<24} {outputs['load_balancer_url']}  (point DNS at {outputs['load_balancer_ip']}; the certificate activates after DNS resolves)")
    streams = outputs.get("stream_urls") or {}
    if streams:
        lines.append("\nLive streams (WebSocket, GET /stream; docs/streams-cloud-run.md):")
        lines += [f"  {region:<24} {wss(url)}/stream" for region, url in sorted(streams.items())]
        if outputs.get("load_balancer_url"):
            lines.append(f"  {'all regions':<24} {wss(outputs['load_balancer_url'])}/stream")
    if "http2" in outputs:
        lines.append("\nProtocol: " + ("HTTP/2 end to end (h2c; no 32 MiB request cap)" if outputs["http2"] else "HTTP/1.1 (requests up to 32 MiB; deploy without --http1 for h2c)"))
    if outputs.get("dashboard_url"):
        lines.append(f"\nDashboard: {outputs['dashboard_url']}")
    target = outputs.get("load_balancer_url") or (sorted(urls.values()) or ["<url>"])[0]
    lines.append("\nTry it (reads the API key from Secret Manager, never prints it):")
    lines.append(f"  KEY=$(gcloud secrets versions access latest --secret={secret} --project={project} | head -n 1)")
    lines.append(f'  curl -sS -H "Authorization: Bearer $KEY" -F file=@image.jpg {target}/predict')
    return "\n".join(lines)


if __name__ == "__main__":
    raw = json.load(open(sys.argv[1], encoding="utf-8"))
    print(report({k: v.get("value") for k, v in raw.items()}, sys.argv[2], sys.argv[3]))
