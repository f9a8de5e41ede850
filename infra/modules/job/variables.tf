variable "project_id" {
  description = "Project of the job."
  type        = string
}

variable "region" {
  description = "Region of this one job (the root module checks it against the regions of the deployment)."
  type        = string
}

variable "name" {
  description = "Cloud Run job name, e.g. \"yolo-batch\" (the same in every region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$", var.name))
    error_message = "name must be a Cloud Run job name: lowercase letters, digits and hyphens, starting with a letter, at most 49 characters."
  }
}

variable "image" {
  description = "The endpoint's container image for this region's accelerator: the job runs `python -m function batch` in it."
  type        = string

  validation {
    condition     = var.image != ""
    error_message = "image must not be empty: the job runs the endpoint's image."
  }
}

variable "accelerator" {
  description = "\"none\" (CPU) or \"nvidia-l4\" (one L4 per task; Cloud Run Jobs need at least 4 CPU and 16Gi with it)."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "nvidia-l4"], var.accelerator)
    error_message = "accelerator must be \"none\" or \"nvidia-l4\" (the GPU Cloud Run Jobs offer)."
  }
}

variable "cpu" {
  description = "CPUs per task, as Cloud Run writes them (\"1\", \"2\", \"4\", \"6\", \"8\")."
  type        = string
  default     = "2"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.cpu)
    error_message = "cpu must be \"1\", \"2\", \"4\", \"6\" or \"8\"."
  }
}

variable "memory" {
  description = "Memory per task (Mi or Gi), e.g. \"4Gi\"; a chunk's images and the model live in it."
  type        = string
  default     = "4Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must be a whole number of Mi or Gi, e.g. \"4Gi\"."
  }
}

variable "service_account" {
  description = "Email of the tasks' identity: it reads the weights and the input, and creates objects under the output prefix only."
  type        = string
}

variable "model" {
  description = "MODEL, as for the endpoint: gs://BUCKET/OBJECT of the weights, or their path in the image."
  type        = string
}

variable "input" {
  description = "Default --input, gs://BUCKET/PREFIX (an execution may override the arguments: make batch INPUT=...)."
  type        = string

  validation {
    condition     = can(regex("^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$", var.input))
    error_message = "input must be gs://BUCKET/PREFIX."
  }
}

variable "output" {
  description = "Default --output, gs://BUCKET/PREFIX: the run's plan, results/, errors/ and summary.json."
  type        = string

  validation {
    condition     = can(regex("^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$", var.output))
    error_message = "output must be gs://BUCKET/PREFIX."
  }
}

variable "batch_args" {
  description = "More arguments of `python -m function batch`, e.g. [\"--imgsz\", \"640\", \"--chunk-size\", \"200\"]."
  type        = list(string)
  default     = []
}

variable "task_count" {
  description = "Tasks per execution (1-10000): each takes the chunks j with j mod task_count = its index."
  type        = number
  default     = 10

  validation {
    condition     = var.task_count == floor(var.task_count) && var.task_count >= 1 && var.task_count <= 10000
    error_message = "task_count must be a whole number from 1 to 10000."
  }
}

variable "parallelism" {
  description = "Tasks running at once (0: as many as Cloud Run allows); GPU quota usually bounds it."
  type        = number
  default     = 0

  validation {
    condition     = var.parallelism == floor(var.parallelism) && var.parallelism >= 0 && var.parallelism <= 10000
    error_message = "parallelism must be a whole number from 0 to 10000."
  }
}

variable "max_retries" {
  description = "Retries of a failed task (0-10), under the same index: it does only the chunks its earlier attempts did not write."
  type        = number
  default     = 3

  validation {
    condition     = var.max_retries == floor(var.max_retries) && var.max_retries >= 0 && var.max_retries <= 10
    error_message = "max_retries must be a whole number from 0 to 10."
  }
}

variable "task_timeout_seconds" {
  description = "Limit of one task attempt in seconds (up to 168 hours); a retry starts where the attempt stopped."
  type        = number
  default     = 3600

  validation {
    condition     = var.task_timeout_seconds == floor(var.task_timeout_seconds) && var.task_timeout_seconds >= 1 && var.task_timeout_seconds <= 604800
    error_message = "task_timeout_seconds must be a whole number from 1 to 604800 (168 hours)."
  }
}

variable "env" {
  description = "More environment variables of the tasks (MAX_BATCH_SIZE, ENGINE, ...); MODEL is the module's."
  type        = map(string)
  default     = {}
}

variable "labels" {
  description = "Labels on the job."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Refuse `terraform destroy` of the job."
  type        = bool
  default     = false
}
