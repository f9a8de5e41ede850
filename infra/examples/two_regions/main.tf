# Two regions behind one global HTTPS load balancer that sends each client to the nearer one: an
# NVIDIA L4 in Iowa (one warm instance, up to 4) and a CPU-only endpoint in Frankfurt that scales
# to zero and is billed per request. Alerts go to one notification channel. Requests reach the
# container as HTTP/2 end to end (http2 = true, the default), so uploads over 32 MiB get through.
# Iowa also takes live camera streams (streams = true): a second service, yolo-streams, with an http1
# port for WebSockets, reached at wss://DOMAIN/stream through the load balancer or at its own URL.
#
#   terraform init
#   terraform apply -var project_id=my-project -var domain=yolo.example.com          # shared resources
#   gcloud storage cp best.pt gs://my-project-yolo-weights/models/v1/best.pt
#   gcloud builds submit ../../.. --config=../../cloudbuild.yaml --region=us-central1 \
#     --substitutions=_NVIDIA_L4_IMAGE=us-central1-docker.pkg.dev/my-project/yolo/endpoint-nvidia-l4:v1,_CPU_IMAGE=us-central1-docker.pkg.dev/my-project/yolo/endpoint-cpu:v1,_WEIGHTS=none
#   echo -n "$(openssl rand -hex 24)" | gcloud secrets versions add yolo-api-keys --data-file=-
#   terraform apply -var project_id=my-project -var domain=yolo.example.com \
#     -var gpu_image=us-central1-docker.pkg.dev/my-project/yolo/endpoint-nvidia-l4:v1 \
#     -var cpu_image=us-central1-docker.pkg.dev/my-project/yolo/endpoint-cpu:v1
module "yolo" {
  # From another repository: source = "github.com/OWNER/REPO//infra?ref=v1.0.0" (pin a tag).
  source = "../.."

  project_id = var.project_id
  name       = "yolo"
  regions = {
    # streams: the stream service scales 0 to 2 L4 instances (stream_defaults), 12 cameras each; with the endpoint's
    # 4 that is up to 6 L4s in us-central1, so request that much GPU quota there.
    "us-central1"  = { accelerator = "nvidia-l4", max_instances = 4, streams = true, max_streams = 12 }
    "europe-west3" = { accelerator = "none", cpu = "2", memory = "4Gi" }
  }
  stream_defaults = {
    max_instances = 2
  }
  images       = { "nvidia-l4" = var.gpu_image, cpu = var.cpu_image }
  model_object = var.model_object
  model_id     = "best"
  # "pytorch" (the default) answers exactly as Ultralytics does; "auto" serves OpenVINO in the CPU
  # region and TensorRT fp16 on the L4, built once and cached next to the weights (README,
  # Performance). A region may set its own: { accelerator = "none", engine = "openvino" }.
  engine = "pytorch"

  gpu_zonal_redundancy_disabled = true
  # h2c end to end (no 32 MiB request cap); false names the port http1, for an image that speaks HTTP/1.1 only.
  http2 = true

  lb_domains            = [var.domain]
  labels                = { env = "prod" }
  notification_channels = var.notification_channels
  monitoring = {
    p95_latency_threshold_ms = 1500
  }

  # Bulk inference over a bucket (docs/batch.md): a Cloud Run Job with an L4 per task, in the endpoint's image with
  # its weights; run it with make batch, or gcloud run jobs execute yolo-batch --region us-central1 --wait.
  batch_jobs = {
    "us-central1" = {
      input       = "gs://${var.project_id}-photos/incoming"
      output      = "gs://${var.project_id}-results/incoming"
      task_count  = 20
      parallelism = 4
      batch_args  = ["--imgsz", "640"]
    }
  }
}
