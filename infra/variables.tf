variable "project_id" {
  description = "ID of the Google Cloud project to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "name" {
  description = "Base name of every resource (Cloud Run services, service accounts, buckets, secret, repository)."
  type        = string
  default     = "yolo"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,18}[a-z0-9]$", var.name))
    error_message = "name must be 2-20 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen (it prefixes service account IDs, which are capped at 30 characters)."
  }
}

variable "gpu_regions" {
  description = "Regions where Cloud Run offers the NVIDIA L4 GPU to services. Every entry of `regions` must be in this list; override it when Google adds a region (see https://cloud.google.com/run/docs/configuring/services/gpu#supported-regions). asia-south1 is by invitation only."
  type        = list(string)
  default     = ["us-central1", "us-east4", "europe-west1", "europe-west4", "asia-southeast1", "asia-south1"]

  validation {
    condition     = length(var.gpu_regions) > 0 && alltrue([for r in var.gpu_regions : can(regex("^[a-z]+-[a-z]+[0-9]+$", r))])
    error_message = "gpu_regions must be a non-empty list of region names such as us-central1."
  }
}

variable "regions" {
  description = "Regions to run one GPU endpoint in, e.g. [\"us-central1\", \"europe-west4\"]. The first one also hosts the Artifact Registry repository unless artifact_registry_location is set."
  type        = list(string)

  validation {
    condition     = length(var.regions) > 0 && length(distinct(var.regions)) == length(var.regions)
    error_message = "regions must name at least one region, each at most once."
  }

  validation {
    condition     = alltrue([for r in var.regions : contains(var.gpu_regions, r)])
    error_message = "Every region must be a Cloud Run GPU region (var.gpu_regions); override gpu_regions if Google has added yours."
  }
}

variable "stopped_regions" {
  description = "Regions of `regions` that are stopped: their Cloud Run service is deleted, so no instance runs and no GPU is billed; everything else (bucket, secret, image, load balancer) stays. Owned by infra/scripts/stop.sh and start.sh."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.stopped_regions : contains(var.regions, r)])
    error_message = "stopped_regions may only name regions that are in var.regions."
  }
}

variable "image" {
  description = "Container image to serve, by digest (REGION-docker.pkg.dev/PROJECT/REPO/IMAGE@sha256:...) or tag. Leave empty on the very first apply to create only the shared resources (repository, bucket, secret, service accounts) that building the image needs; no Cloud Run service is created until an image is given."
  type        = string
  default     = ""

  validation {
    condition     = var.image == "" || can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[a-f0-9]{64})$", var.image))
    error_message = "image must be a full image reference with a registry host and a tag or @sha256 digest, or empty."
  }
}

variable "weights_bucket" {
  description = "Existing Cloud Storage bucket that holds the weights. Empty: the module creates PROJECT-NAME-weights (uniform access, public access prevented, versioned)."
  type        = string
  default     = ""

  validation {
    condition     = var.weights_bucket == "" || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.weights_bucket))
    error_message = "weights_bucket must be a bucket name (no gs:// prefix), or empty."
  }
}

variable "model_object" {
  description = "Object name of the weights inside the weights bucket, e.g. models/3f2a9c0d1e2b4a5c/best.pt. The service's MODEL becomes gs://BUCKET/OBJECT and is downloaded at cold start. Exactly one of model_object and model_path_in_image is set once an image is given."
  type        = string
  default     = ""

  validation {
    condition     = var.model_object == "" || can(regex("^[^/].*[^/]$", var.model_object))
    error_message = "model_object must be an object name such as models/abc/best.pt (no leading gs://bucket/, no trailing slash)."
  }
}

variable "model_path_in_image" {
  description = "Absolute path of weights baked into the image at build time (Dockerfile build argument WEIGHTS=baked puts them at /opt/weights/best.pt). When set, MODEL points there and the service account gets no bucket access."
  type        = string
  default     = ""

  validation {
    condition     = var.model_path_in_image == "" || startswith(var.model_path_in_image, "/")
    error_message = "model_path_in_image must be an absolute path inside the image, or empty."
  }
}

variable "model_id" {
  description = "Optional model ID served at POST /api/models/{model_id}/predict (the Ultralytics Platform URL shape). Empty: any ID is accepted there."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{0,64}$", var.model_id))
    error_message = "model_id may only contain letters, digits, underscores and hyphens (at most 64)."
  }
}

variable "resources" {
  description = "CPU and memory of each instance. An NVIDIA L4 on Cloud Run needs at least 4 CPU and 16 GiB."
  type = object({
    cpu    = optional(string, "4")
    memory = optional(string, "16Gi")
  })
  default = {}

  validation {
    condition     = contains(["4", "6", "8"], var.resources.cpu)
    error_message = "resources.cpu must be \"4\", \"6\" or \"8\": an L4 GPU needs at least 4 CPU and Cloud Run allows at most 8."
  }

  validation {
    condition     = can(regex("^[0-9]+Gi$", var.resources.memory)) && try(tonumber(trimsuffix(var.resources.memory, "Gi")) >= 16 && tonumber(trimsuffix(var.resources.memory, "Gi")) <= 32, false)
    error_message = "resources.memory must be between \"16Gi\" and \"32Gi\": an L4 GPU needs at least 16 GiB and Cloud Run allows at most 32 GiB."
  }
}

variable "min_instances" {
  description = "Warm instances kept per running region (service-level minimum). Each one is a GPU billed every second it runs, idle or not; 0 scales to zero and makes the first request wait for a cold start."
  type        = number
  default     = 1

  validation {
    condition     = var.min_instances >= 0 && var.min_instances <= 100 && floor(var.min_instances) == var.min_instances
    error_message = "min_instances must be a whole number from 0 to 100."
  }
}

variable "max_instances" {
  description = "Most instances per region (service-level maximum). Bounded by your Cloud Run L4 GPU quota in that region."
  type        = number
  default     = 3

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number from 1 to 1000."
  }

  validation {
    condition     = var.max_instances >= var.min_instances
    error_message = "max_instances must not be below min_instances."
  }
}

variable "max_concurrency" {
  description = "Requests one instance accepts at once (Cloud Run max_instance_request_concurrency). The service gets the same number of request threads (THREADS); requests beyond it wait in the service's own queue for the one GPU."
  type        = number
  default     = 8

  validation {
    condition     = var.max_concurrency >= 1 && var.max_concurrency <= 1000 && floor(var.max_concurrency) == var.max_concurrency
    error_message = "max_concurrency must be a whole number from 1 to 1000."
  }
}

variable "request_timeout_seconds" {
  description = "Longest a request may take before Cloud Run answers 504."
  type        = number
  default     = 120

  validation {
    condition     = var.request_timeout_seconds >= 1 && var.request_timeout_seconds <= 3600
    error_message = "request_timeout_seconds must be between 1 and 3600."
  }
}

variable "gpu_zonal_redundancy_disabled" {
  description = "true: no GPU zonal redundancy (cheaper per GPU-second, best-effort failover, its own quota). false: capacity is reserved for zonal failover at a higher price. Request the matching L4 quota either way."
  type        = bool
  default     = true
}

variable "startup_probe" {
  description = "Startup probe on GET /readyz, which answers 503 until the weights are downloaded, loaded on the GPU and warmed. Cloud Run allows failure_threshold x period_seconds up to 240 s; the default uses all of it, which fits a GPU cold start (image pull, weights download, CUDA init, warm-up)."
  type = object({
    initial_delay_seconds = optional(number, 0)
    period_seconds        = optional(number, 10)
    timeout_seconds       = optional(number, 5)
    failure_threshold     = optional(number, 24)
  })
  default = {}

  validation {
    condition     = var.startup_probe.period_seconds * var.startup_probe.failure_threshold >= 60 && var.startup_probe.period_seconds * var.startup_probe.failure_threshold <= 240
    error_message = "startup_probe.period_seconds x failure_threshold must be between 60 s (a GPU cold start needs it) and 240 s (Cloud Run's limit)."
  }

  validation {
    condition     = var.startup_probe.timeout_seconds >= 1 && var.startup_probe.timeout_seconds <= var.startup_probe.period_seconds && var.startup_probe.initial_delay_seconds >= 0 && var.startup_probe.initial_delay_seconds <= 240
    error_message = "startup_probe.timeout_seconds must be 1..period_seconds and initial_delay_seconds 0..240."
  }
}

variable "liveness_probe" {
  description = "Liveness probe on GET /healthz; the container is restarted after failure_threshold failures in a row."
  type = object({
    period_seconds    = optional(number, 30)
    timeout_seconds   = optional(number, 5)
    failure_threshold = optional(number, 3)
  })
  default = {}

  validation {
    condition     = var.liveness_probe.timeout_seconds >= 1 && var.liveness_probe.timeout_seconds <= var.liveness_probe.period_seconds && var.liveness_probe.period_seconds <= 3600 && var.liveness_probe.failure_threshold >= 1
    error_message = "liveness_probe needs 1 <= timeout_seconds <= period_seconds <= 3600 and failure_threshold >= 1."
  }
}

variable "public_access" {
  description = "true (default): anyone on the internet may reach the service (Cloud Run's invoker IAM check is disabled), and the service itself demands an API key from Secret Manager on every predict request. false: only invoker_members may call it, with a Google identity token."
  type        = bool
  default     = true
}

variable "invoker_members" {
  description = "IAM members granted roles/run.invoker on every service when public_access is false, e.g. [\"serviceAccount:caller@p.iam.gserviceaccount.com\"]."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.invoker_members : can(regex("^(user|serviceAccount|group|domain|principal|principalSet):.+", m))])
    error_message = "invoker_members must be IAM members such as user:a@b.com or serviceAccount:x@p.iam.gserviceaccount.com; allUsers is expressed with public_access = true instead."
  }
}

variable "ingress" {
  description = "Cloud Run ingress: INGRESS_TRAFFIC_ALL (default; per-region URLs and the load balancer both work) or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (only through the load balancer)."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"

  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "lb_domains" {
  description = "Domains for the optional global external HTTPS load balancer (EXTERNAL_MANAGED, one serverless NEG per running region, Google-managed certificate). Empty: no load balancer, clients use the per-region URLs. Point each domain's A record at the load_balancer_ip output; the certificate turns ACTIVE after DNS resolves."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for d in var.lb_domains : can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", d))])
    error_message = "lb_domains must be fully qualified lowercase domain names such as api.example.com."
  }
}

variable "extra_env" {
  description = "Additional non-secret environment variables for the service (e.g. MAX_UPLOAD_MB, LOG_LEVEL). Keys the module owns, keys Cloud Run reserves, and anything that would carry or bypass an API key are refused."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for k in keys(var.extra_env) : can(regex("^[A-Z_][A-Z0-9_]*$", k)) && !contains([
      "PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION", "MODEL", "MODEL_ID", "THREADS", "API_KEYS", "API_KEYS_FILE", "ALLOW_UNAUTHENTICATED",
    ], k)])
    error_message = "extra_env keys must be UPPER_SNAKE_CASE and must not be PORT, K_*, MODEL, MODEL_ID, THREADS, API_KEYS, API_KEYS_FILE or ALLOW_UNAUTHENTICATED."
  }
}

variable "api_keys_secret_version" {
  description = "Secret Manager version of the API-key secret mounted into the service: \"latest\" (default; a new version is read by new instances) or a version number to pin."
  type        = string
  default     = "latest"

  validation {
    condition     = can(regex("^(latest|[1-9][0-9]*)$", var.api_keys_secret_version))
    error_message = "api_keys_secret_version must be \"latest\" or a version number."
  }
}

variable "artifact_registry_location" {
  description = "Location of the Artifact Registry repository. Empty: the first of `regions`."
  type        = string
  default     = ""

  validation {
    condition     = var.artifact_registry_location == "" || can(regex("^[a-z]+(-[a-z]+[0-9]+)?$", var.artifact_registry_location))
    error_message = "artifact_registry_location must be a region (us-central1) or a multi-region (us, europe, asia), or empty."
  }
}

variable "storage_location" {
  description = "Location of the buckets this module creates. Empty: the multi-region of the first of `regions` (US, EU or ASIA)."
  type        = string
  default     = ""

  validation {
    condition     = var.storage_location == "" || can(regex("^[A-Za-z0-9-]+$", var.storage_location))
    error_message = "storage_location must be a bucket location such as US, EU or us-central1, or empty."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "labels keys must start with a lowercase letter; keys and values may only contain lowercase letters, digits, underscores and hyphens (at most 63)."
  }
}

variable "enable_apis" {
  description = "Enable the Google APIs this module needs (left enabled on destroy)."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse to delete the Cloud Run services. Off by default, because stop.sh and removing a region both delete a service."
  type        = bool
  default     = false
}
