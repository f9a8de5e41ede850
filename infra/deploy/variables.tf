# The variables infra/scripts/deploy.sh, start.sh and stop.sh write to deploy.tfvars.json. Each is
# passed to the module unchanged, and the module validates it (see infra/variables.tf).

variable "project_id" {
  description = "Google Cloud project ID."
  type        = string
}

variable "name" {
  description = "Base name of every resource."
  type        = string
  default     = "yolo"
}

variable "regions" {
  description = "Regions to serve from."
  type        = list(string)
}

variable "stopped_regions" {
  description = "Regions stopped by stop.sh (no service, no GPU billed)."
  type        = list(string)
  default     = []
}

variable "image" {
  description = "Image to serve; empty on the first apply, which creates only the shared resources."
  type        = string
  default     = ""
}

variable "weights_bucket" {
  description = "Existing bucket holding the weights; empty for the module's own bucket."
  type        = string
  default     = ""
}

variable "model_object" {
  description = "Object name of the weights in the weights bucket."
  type        = string
  default     = ""
}

variable "model_path_in_image" {
  description = "Path of weights baked into the image (deploy.sh --bake-weights)."
  type        = string
  default     = ""
}

variable "model_id" {
  description = "Model ID accepted at POST /api/models/{model_id}/predict."
  type        = string
  default     = ""
}

variable "min_instances" {
  description = "Warm instances per running region."
  type        = number
  default     = 1
}

variable "max_instances" {
  description = "Most instances per region."
  type        = number
  default     = 3
}

variable "max_concurrency" {
  description = "Requests per instance at once."
  type        = number
  default     = 8
}

variable "gpu_zonal_redundancy_disabled" {
  description = "Turn GPU zonal redundancy off (cheaper)."
  type        = bool
  default     = true
}

variable "lb_domains" {
  description = "Domains of the optional global HTTPS load balancer; empty for none."
  type        = list(string)
  default     = []
}
