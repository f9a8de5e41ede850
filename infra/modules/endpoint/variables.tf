variable "project_id" {
  description = "Project of the service."
  type        = string
}

variable "region" {
  description = "Region of this one service (the root module checks it against cloud_run_regions, and against gpu_regions when it has a GPU)."
  type        = string
}

variable "name" {
  description = "Cloud Run service name (the same in every region, so the load balancer's serverless NEGs can all point at it)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$", var.name))
    error_message = "name must be a Cloud Run service name: lowercase letters, digits and hyphens, starting with a letter, at most 49 characters."
  }
}

variable "revision" {
  description = "Everything the revision is built from (the root module's local.revisions[region].candidate, or local.stream_revisions[region].candidate for a stream service); revision_name must be a hash of it, so that equal inputs always mean the same revision. http2 = true names the container port h2c (HTTP/2 end to end, no 32 MiB request cap), false (default) http1, which WebSockets need. session_affinity = true sends a client's later requests to the same instance, best effort (null, the default, leaves it out)."
  type = object({
    image                         = string
    accelerator                   = string
    cpu                           = string
    memory                        = string
    cpu_idle                      = bool
    gpu_zonal_redundancy_disabled = optional(bool)
    max_concurrency               = number
    timeout_seconds               = number
    service_account               = string
    api_keys_secret               = string
    api_keys_secret_version       = string
    startup_probe = object({
      initial_delay_seconds = number
      period_seconds        = number
      timeout_seconds       = number
      failure_threshold     = number
    })
    liveness_probe = object({
      period_seconds    = number
      timeout_seconds   = number
      failure_threshold = number
    })
    labels                   = map(string)
    prometheus_sidecar_image = string
    env                      = map(string)
    http2                    = optional(bool, false)
    session_affinity         = optional(bool)
  })

  validation {
    condition     = var.revision.image != "" && contains(["none", "nvidia-l4", "nvidia-rtx-pro-6000"], var.revision.accelerator)
    error_message = "revision.image must not be empty and revision.accelerator must be \"none\", \"nvidia-l4\" or \"nvidia-rtx-pro-6000\"."
  }

  validation {
    # A GPU revision keeps instance-based billing (Cloud Run requires it with a GPU); a CPU one is billed per request.
    condition     = var.revision.cpu_idle == (var.revision.accelerator == "none")
    error_message = "revision.cpu_idle must be true for a CPU revision (request-based billing) and false for a GPU one (instance-based billing, required with a GPU)."
  }

  validation {
    condition     = can(regex("@[a-z0-9-]+\\.iam\\.gserviceaccount\\.com$", var.revision.service_account)) && !can(regex("-compute@developer\\.gserviceaccount\\.com$", var.revision.service_account))
    error_message = "revision.service_account must be a user-managed service account, not the Compute Engine default one."
  }

  validation {
    condition     = length(setintersection(keys(var.revision.env), ["API_KEYS", "API_KEYS_FILE", "ALLOW_UNAUTHENTICATED", "PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"])) == 0
    error_message = "revision.env must not set API_KEYS, API_KEYS_FILE, ALLOW_UNAUTHENTICATED or a variable Cloud Run reserves (PORT, K_*)."
  }

  validation {
    condition     = var.revision.startup_probe.period_seconds * var.revision.startup_probe.failure_threshold <= 240
    error_message = "Cloud Run allows a startup window (period_seconds x failure_threshold) of at most 240 s."
  }

  validation {
    condition     = var.revision.timeout_seconds >= 1 && var.revision.timeout_seconds <= 3600 && var.revision.max_concurrency >= 1 && var.revision.max_concurrency <= 1000
    error_message = "revision.timeout_seconds must be 1-3600 (Cloud Run's request timeout) and revision.max_concurrency 1-1000 (its most concurrent requests per instance)."
  }
}

variable "description" {
  description = "Description of the service; empty (default): \"YOLO inference endpoint on\" its accelerator."
  type        = string
  default     = ""
}

variable "revision_name" {
  description = "Name of the revision (SERVICE-HASH)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.revision_name))
    error_message = "revision_name must be lowercase letters, digits and hyphens, at most 63 characters."
  }
}

variable "traffic" {
  description = "Traffic targets (the root module's local.traffic[region]): LATEST 100 %, or a canary split between two named revisions."
  type = list(object({
    type     = string
    revision = optional(string)
    percent  = number
    tag      = optional(string)
  }))

  validation {
    condition     = sum([for t in var.traffic : t.percent]) == 100
    error_message = "traffic percentages must add up to 100."
  }
}

variable "min_instances" {
  description = "Service-level minimum (warm) instances."
  type        = number
}

variable "max_instances" {
  description = "Service-level maximum instances."
  type        = number
}

variable "public_access" {
  description = "Disable Cloud Run's invoker IAM check (anyone may connect; the service's API keys guard predictions)."
  type        = bool
  default     = true
}

variable "invoker_members" {
  description = "Members granted roles/run.invoker when public_access is false."
  type        = list(string)
  default     = []
}

variable "ingress" {
  description = "Cloud Run ingress setting."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"
}

variable "labels" {
  description = "Labels of the service."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Refuse to delete the service."
  type        = bool
  default     = false
}
