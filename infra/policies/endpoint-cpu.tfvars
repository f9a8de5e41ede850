# Concrete inputs for scanning infra/modules/endpoint on its own with checkov: a CPU region.
project_id    = "my-proj-123"
region        = "europe-west3"
name          = "yolo"
revision_name = "yolo-0123456789"
min_instances = 0
max_instances = 3
traffic       = [{ type = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", percent = 100 }]
revision = {
  image                         = "us-central1-docker.pkg.dev/my-proj-123/yolo/endpoint-cpu:0123456789abcdef"
  accelerator                   = "none"
  cpu                           = "2"
  memory                        = "4Gi"
  cpu_idle                      = true
  gpu_zonal_redundancy_disabled = null
  max_concurrency               = 8
  timeout_seconds               = 120
  service_account               = "yolo-run@my-proj-123.iam.gserviceaccount.com"
  api_keys_secret               = "yolo-api-keys"
  api_keys_secret_version       = "latest"
  startup_probe                 = { initial_delay_seconds = 0, period_seconds = 10, timeout_seconds = 5, failure_threshold = 24 }
  liveness_probe                = { period_seconds = 30, timeout_seconds = 5, failure_threshold = 3 }
  labels                        = {}
  prometheus_sidecar_image      = "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0"
  http2                         = false
  env = {
    MODEL   = "gs://my-proj-123-yolo-weights/models/0123456789abcdef/best.pt"
    THREADS = "8"
  }
}
