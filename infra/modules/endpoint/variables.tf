variable "project_id" {
  description = "Project of the service."
  type        = string
}

variable "region" {
  description = "Region of this one service; must offer Cloud Run L4 GPUs (the root module checks it against its gpu_regions list)."
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

variable "image" {
  description = "Container image (by digest or tag)."
  type        = string

  validation {
    condition     = var.image != ""
    error_message = "image must not be empty."
  }
}

variable "service_account_email" {
  description = "Runtime identity of the service (the root module's least-privilege account, never the Compute Engine default)."
  type        = string

  validation {
    condition     = can(regex("@[a-z0-9-]+\\.iam\\.gserviceaccount\\.com$", var.service_account_email)) && !can(regex("-compute@developer\\.gserviceaccount\\.com$", var.service_account_email))
    error_message = "service_account_email must be a user-managed service account, not the Compute Engine default one."
  }
}

variable "env" {
  description = "Plain (non-secret) environment variables. API keys never go here: they arrive through api_keys_secret."
  type        = map(string)

  validation {
    condition     = length(setintersection(keys(var.env), ["API_KEYS", "API_KEYS_FILE", "ALLOW_UNAUTHENTICATED", "PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"])) == 0
    error_message = "env must not set API_KEYS, API_KEYS_FILE, ALLOW_UNAUTHENTICATED or a variable Cloud Run reserves (PORT, K_*)."
  }
}

variable "api_keys_secret" {
  description = "Secret Manager secret ID (same project) holding the API keys, one per line; mounted read-only at /secrets/api-keys/keys, which API_KEYS_FILE names."
  type        = string
}

variable "api_keys_secret_version" {
  description = "Version of api_keys_secret to mount: \"latest\" or a number."
  type        = string
  default     = "latest"
}

variable "cpu" {
  description = "CPU limit (an L4 needs at least \"4\")."
  type        = string
  default     = "4"

  validation {
    condition     = contains(["4", "6", "8"], var.cpu)
    error_message = "cpu must be \"4\", \"6\" or \"8\"."
  }
}

variable "memory" {
  description = "Memory limit (an L4 needs at least \"16Gi\")."
  type        = string
  default     = "16Gi"

  validation {
    condition     = can(regex("^[0-9]+Gi$", var.memory)) && try(tonumber(trimsuffix(var.memory, "Gi")) >= 16 && tonumber(trimsuffix(var.memory, "Gi")) <= 32, false)
    error_message = "memory must be between \"16Gi\" and \"32Gi\"."
  }
}

variable "min_instances" {
  description = "Service-level minimum (warm) instances."
  type        = number
  default     = 1
}

variable "max_instances" {
  description = "Service-level maximum instances."
  type        = number
  default     = 3
}

variable "max_concurrency" {
  description = "Requests per instance at once."
  type        = number
  default     = 8
}

variable "request_timeout_seconds" {
  description = "Request timeout in seconds."
  type        = number
  default     = 120
}

variable "gpu_zonal_redundancy_disabled" {
  description = "Turn GPU zonal redundancy off (cheaper, best-effort failover)."
  type        = bool
  default     = true
}

variable "startup_probe" {
  description = "Startup probe timing for GET /readyz."
  type = object({
    initial_delay_seconds = optional(number, 0)
    period_seconds        = optional(number, 10)
    timeout_seconds       = optional(number, 5)
    failure_threshold     = optional(number, 24)
  })
  default = {}

  validation {
    condition     = var.startup_probe.period_seconds * var.startup_probe.failure_threshold <= 240
    error_message = "Cloud Run allows a startup window (period_seconds x failure_threshold) of at most 240 s."
  }
}

variable "liveness_probe" {
  description = "Liveness probe timing for GET /healthz."
  type = object({
    period_seconds    = optional(number, 30)
    timeout_seconds   = optional(number, 5)
    failure_threshold = optional(number, 3)
  })
  default = {}
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
  description = "Labels of the service and its revisions."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Refuse to delete the service."
  type        = bool
  default     = false
}
