variable "project_id" {
  description = "Project to deploy into."
  type        = string
}

variable "gpu_image" {
  description = "L4 endpoint image built from this repository's Dockerfile with --build-arg ACCELERATOR=nvidia-l4, e.g. us-central1-docker.pkg.dev/PROJECT/yolo/endpoint-nvidia-l4:TAG. Leave both images empty for the first apply, build and push them, then apply again."
  type        = string
  default     = ""
}

variable "cpu_image" {
  description = "CPU endpoint image built from this repository's Dockerfile with --build-arg ACCELERATOR=none, e.g. us-central1-docker.pkg.dev/PROJECT/yolo/endpoint-cpu:TAG."
  type        = string
  default     = ""
}

variable "model_object" {
  description = "Object name of best.pt inside gs://PROJECT-yolo-weights, e.g. models/v1/best.pt."
  type        = string
  default     = "models/v1/best.pt"
}

variable "domain" {
  description = "Domain for the global HTTPS load balancer (its A record must point at the load_balancer_ip output)."
  type        = string
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels for the alerts, as projects/PROJECT/notificationChannels/ID."
  type        = list(string)
  default     = []
}
