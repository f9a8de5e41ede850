# Two regions, one in the US and one in Europe, behind one global HTTPS load balancer that sends
# each client to the nearer region. One warm L4 per region; up to 4 per region under load.
#
#   terraform init
#   terraform apply -var project_id=my-project -var domain=yolo.example.com          # shared resources
#   gcloud storage cp best.pt gs://my-project-yolo-weights/models/v1/best.pt
#   gcloud builds submit ../../.. --config=../../cloudbuild.yaml \
#     --substitutions=_IMAGE=us-central1-docker.pkg.dev/my-project/yolo/endpoint:v1,_WEIGHTS=none
#   echo -n "$(openssl rand -hex 24)" | gcloud secrets versions add yolo-api-keys --data-file=-
#   terraform apply -var project_id=my-project -var domain=yolo.example.com \
#     -var image=us-central1-docker.pkg.dev/my-project/yolo/endpoint:v1
module "yolo" {
  # From another repository: source = "github.com/OWNER/REPO//infra?ref=v1.0.0" (pin a tag).
  source = "../.."

  project_id   = var.project_id
  name         = "yolo"
  regions      = ["us-central1", "europe-west4"]
  image        = var.image
  model_object = var.model_object
  model_id     = "best"

  min_instances                 = 1
  max_instances                 = 4
  max_concurrency               = 8
  gpu_zonal_redundancy_disabled = true

  lb_domains = [var.domain]
  labels     = { env = "prod" }
}
