variable "project_id" {
  description = "Project to deploy into."
  type        = string
}

variable "rtx_pro_6000_image" {
  description = "RTX PRO 6000 endpoint image built from this repository's Dockerfile with --build-arg ACCELERATOR=nvidia-rtx-pro-6000, e.g. europe-west4-docker.pkg.dev/PROJECT/yolo/endpoint-nvidia-rtx-pro-6000:TAG. Leave the images empty for the first apply, build and push them, then apply again."
  type        = string
  default     = ""
}

variable "l4_image" {
  description = "L4 endpoint image built with --build-arg ACCELERATOR=nvidia-l4, e.g. europe-west4-docker.pkg.dev/PROJECT/yolo/endpoint-nvidia-l4:TAG."
  type        = string
  default     = ""
}

variable "model_object" {
  description = "Object name of best.pt inside gs://PROJECT-yolo-weights, e.g. models/v1/best.pt."
  type        = string
  default     = "models/v1/best.pt"
}
