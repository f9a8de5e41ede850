variable "project_id" {
  description = "Project to deploy into."
  type        = string
}

variable "image" {
  description = "Endpoint image built from this repository's Dockerfile, e.g. us-central1-docker.pkg.dev/PROJECT/yolo/endpoint:TAG. Leave empty for the first apply, build and push the image, then apply again with it."
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
