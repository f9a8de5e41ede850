# One NVIDIA RTX PRO 6000 Blackwell (96 GB) per instance in the Netherlands, for big models, large
# image sizes and video, with an L4 region beside it in Iowa for lighter traffic. Each GPU runs
# the image built for its driver (Dockerfile --build-arg ACCELERATOR=nvidia-rtx-pro-6000: driver
# 580 / CUDA 13.0; ACCELERATOR=nvidia-l4: driver 535 / CUDA 12.2). The RTX PRO 6000 needs at
# least 20 CPU and 80 GiB per instance and its own Cloud Run quota in each region
# (https://cloud.google.com/run/docs/configuring/services/gpu).
#
#   terraform init
#   terraform apply -var project_id=my-project                                        # shared resources
#   gcloud storage cp best.pt gs://my-project-yolo-weights/models/v1/best.pt
#   gcloud builds submit ../../.. --config=../../cloudbuild.yaml --region=europe-west4 \
#     --substitutions=_NVIDIA_RTX_PRO_6000_IMAGE=europe-west4-docker.pkg.dev/my-project/yolo/endpoint-nvidia-rtx-pro-6000:v1,_NVIDIA_L4_IMAGE=europe-west4-docker.pkg.dev/my-project/yolo/endpoint-nvidia-l4:v1,_WEIGHTS=none
#   echo -n "$(openssl rand -hex 24)" | gcloud secrets versions add yolo-api-keys --data-file=-
#   terraform apply -var project_id=my-project \
#     -var rtx_pro_6000_image=europe-west4-docker.pkg.dev/my-project/yolo/endpoint-nvidia-rtx-pro-6000:v1 \
#     -var l4_image=europe-west4-docker.pkg.dev/my-project/yolo/endpoint-nvidia-l4:v1
module "yolo" {
  # From another repository: source = "github.com/OWNER/REPO//infra?ref=v1.0.0" (pin a tag).
  source = "../.."

  project_id = var.project_id
  name       = "yolo"
  regions = {
    "europe-west4" = { accelerator = "nvidia-rtx-pro-6000" }          # rtx_pro_6000_defaults: 20 vCPU, 80Gi
    "us-central1"  = { accelerator = "nvidia-l4", min_instances = 0 } # gpu_defaults: 4 vCPU, 16Gi
  }
  rtx_pro_6000_defaults = {
    max_instances = 2
  }
  images = {
    "nvidia-rtx-pro-6000" = var.rtx_pro_6000_image
    "nvidia-l4"           = var.l4_image
  }
  model_object = var.model_object
  # "auto" serves TensorRT fp16 on both GPUs, built once per GPU and cached next to the weights.
  engine = "auto"

  # Zonal redundancy off: cheaper per GPU-second, best-effort failover; request the matching quota.
  gpu_zonal_redundancy_disabled = true
  # h2c end to end: no 32 MiB request cap, so large images and videos reach the server.
  http2 = true
}
