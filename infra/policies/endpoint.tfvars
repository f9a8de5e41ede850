# Concrete inputs for scanning infra/modules/endpoint on its own with checkov (the module is
# instantiated per region with for_each in infra/main.tf, which checkov does not expand): a GPU
# region with an L4. endpoint-cpu.tfvars is the same for a CPU region (HTTP/1), endpoint-rtx-pro-6000.tfvars for an
# RTX PRO 6000 region.
project_id    = "my-proj-123"
region        = "us-central1"
name          = "yolo"
revision_name = "yolo-0123456789"
min_instances = 1
max_instances = 3
traffic       = [{ type = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", percent = 100 }]
revision = {
  image                         = "us-central1-docker.pkg.dev/my-proj-123/yolo/endpoint-nvidia-l4:0123456789abcdef"
  accelerator                   = "nvidia-l4"
  cpu                           = "4"
  memory                        = "16Gi"
  cpu_idle                      = false
  gpu_zonal_redundancy_disabled = true
  max_concurrency               = 8
  timeout_seconds               = 120
  service_account               = "yolo-run@my-proj-123.iam.gserviceaccount.com"
  api_keys_secret               = "yolo-api-keys"
  api_keys_secret_version       = "latest"
  startup_probe                 = { initial_delay_seconds = 0, period_seconds = 10, timeout_seconds = 5, failure_threshold = 24 }
  liveness_probe                = { period_seconds = 30, timeout_seconds = 5, failure_threshold = 3 }
  labels                        = {}
  prometheus_sidecar_image      = "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0"
  http2                         = true
  env = {
    MODEL   = "gs://my-proj-123-yolo-weights/models/0123456789abcdef/best.pt"
    THREADS = "8"
  }
}
