# The variables infra/scripts (deploy, start, stop, promote, rollback) write to deploy.tfvars.json.
# Each is passed to the module unchanged, and the module validates it (see infra/variables.tf).

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
  description = "Regions to serve from, each with its accelerator (\"none\", \"nvidia-l4\" or \"nvidia-rtx-pro-6000\"), optional own sizes, batch size and engine, and streams = true for a stream service beside the endpoint (deploy.sh --streams or REGION:streams)."
  type = map(object({
    accelerator     = optional(string, "none")
    cpu             = optional(string)
    memory          = optional(string)
    min_instances   = optional(number)
    max_instances   = optional(number)
    max_concurrency = optional(number)
    max_batch_size  = optional(number)
    engine          = optional(string)
    streams         = optional(bool, false)
    max_streams     = optional(number)
  }))
}

variable "engine" {
  description = "The server's ENGINE where a region sets none: pytorch (default), onnx, openvino, tensorrt or auto (OpenVINO on CPU regions, TensorRT fp16 on GPU regions)."
  type        = string
  default     = "pytorch"
}

variable "gpu_defaults" {
  description = "Sizes and scaling of NVIDIA L4 regions (the module's defaults where a key is absent)."
  type        = map(any)
  default     = {}
}

variable "rtx_pro_6000_defaults" {
  description = "Sizes and scaling of NVIDIA RTX PRO 6000 regions (the module's defaults where a key is absent)."
  type        = map(any)
  default     = {}
}

variable "cpu_defaults" {
  description = "Sizes and scaling of CPU regions (the module's defaults where a key is absent)."
  type        = map(any)
  default     = {}
}

variable "stream_defaults" {
  description = "Streams per instance and scaling of the stream services (the module's defaults where a key is absent; deploy.sh --max-streams sets max_streams)."
  type        = map(any)
  default     = {}
}

variable "stopped_regions" {
  description = "Regions stopped by stop.sh (no service, nothing billed for it)."
  type        = list(string)
  default     = []
}

variable "images" {
  description = "Images to serve, by flavour (cpu, nvidia-l4, nvidia-rtx-pro-6000); empty on the first apply, which creates only the shared resources."
  type        = map(string)
  default     = {}
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

variable "models" {
  description = "More models beside the default one: id => object name in the weights bucket, or gs://BUCKET/OBJECT (the service's MODELS)."
  type        = map(string)
  default     = {}
}

variable "gpu_zonal_redundancy_disabled" {
  description = "Turn GPU zonal redundancy off (cheaper)."
  type        = bool
  default     = true
}

variable "http2" {
  description = "Name the container port h2c: HTTP/2 end to end, so requests over 32 MiB (Cloud Run's HTTP/1 cap) reach the server (deploy.sh --http1 sets false). The module validates it."
  type        = bool
  default     = true
}

variable "artifact_registry_location" {
  description = "Region of the image repository and Cloud Build (deploy.sh passes the first region given)."
  type        = string
  default     = ""
}

variable "lb_domains" {
  description = "Domains of the optional global HTTPS load balancer; empty for none."
  type        = list(string)
  default     = []
}

variable "canary" {
  description = "A canary in progress (percent, and the stable release), or null."
  type        = any
  default     = null
}

variable "monitoring" {
  description = "Dashboard, uptime checks, alerts and Prometheus sidecar settings (the module's defaults where a key is absent)."
  type        = any
  default     = {}
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels for the alerts."
  type        = list(string)
  default     = []
}

variable "batch_jobs" {
  description = "Batch jobs by region (make batch sets them; see the module's batch_jobs)."
  type        = any
  default     = {}
}
