# Concrete inputs for scanning infra/modules/endpoint on its own with checkov (the module is
# instantiated per region with for_each in infra/main.tf, which checkov does not expand).
project_id            = "my-proj-123"
region                = "us-central1"
name                  = "yolo"
image                 = "us-central1-docker.pkg.dev/my-proj-123/yolo/endpoint:0123456789abcdef"
service_account_email = "yolo-run@my-proj-123.iam.gserviceaccount.com"
api_keys_secret       = "yolo-api-keys"
env = {
  MODEL   = "gs://my-proj-123-yolo-weights/models/0123456789abcdef/best.pt"
  THREADS = "8"
}
