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
  description = <<-EOT
    Regions where Cloud Run offers each GPU to services, by accelerator
    (https://cloud.google.com/run/docs/configuring/services/gpu#supported-regions, and for the NVIDIA RTX PRO 6000
    Blackwell https://docs.cloud.google.com/run/docs/configuring/workerpools/gpu, which lists the same GPUs; asia-south1
    (L4) and asia-south2 (RTX PRO 6000) are by invitation only). A region of `regions` with a GPU accelerator must be in
    that accelerator's list; override it when Google adds a region (a list given here replaces that GPU's default list).
  EOT
  type        = map(list(string))
  default = {
    "nvidia-l4"           = ["us-central1", "us-east4", "europe-west1", "europe-west4", "asia-southeast1", "asia-south1"]
    "nvidia-rtx-pro-6000" = ["us-central1", "europe-west4", "asia-southeast1", "asia-south2"]
  }

  validation {
    condition     = alltrue([for gpu, list in var.gpu_regions : contains(["nvidia-l4", "nvidia-rtx-pro-6000"], gpu) && alltrue([for r in list : can(regex("^[a-z]+-[a-z]+[0-9]+$", r))])])
    error_message = "gpu_regions maps \"nvidia-l4\" and/or \"nvidia-rtx-pro-6000\" to lists of region names such as us-central1."
  }
}

variable "cloud_run_regions" {
  description = "Regions where Cloud Run runs services (https://cloud.google.com/run/docs/locations: the Tier 1 then the Tier 2 pricing regions). Every key of `regions` must be in this list; override it when Google adds a region."
  type        = list(string)
  default = [
    "asia-east1", "asia-northeast1", "asia-northeast2", "europe-north1", "europe-southwest1", "europe-west1", "europe-west4",
    "europe-west8", "europe-west9", "me-west1", "us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1",
    "africa-south1", "asia-east2", "asia-northeast3", "asia-southeast1", "asia-southeast2", "asia-south1", "asia-south2",
    "australia-southeast1", "australia-southeast2", "europe-central2", "europe-west10", "europe-west12", "europe-west2",
    "europe-west3", "europe-west6", "me-central1", "me-central2", "northamerica-northeast1", "northamerica-northeast2",
    "southamerica-east1", "southamerica-west1", "us-west2", "us-west3", "us-west4",
  ]

  validation {
    condition     = length(var.cloud_run_regions) > 0 && alltrue([for r in var.cloud_run_regions : can(regex("^[a-z]+-[a-z]+[0-9]+$", r))])
    error_message = "cloud_run_regions must be a non-empty list of region names such as europe-west3."
  }
}

variable "gpu_defaults" {
  description = "Size and scaling of every NVIDIA L4 region (accelerator = \"nvidia-l4\") unless the region sets its own. One L4 (24 GB) per instance needs at least 4 CPU and 16 GiB (https://cloud.google.com/run/docs/configuring/services/gpu); GPU services use instance-based billing, so each warm instance (min_instances) is billed every second it runs. max_batch_size is the server's MAX_BATCH_SIZE: 8 on the GPU, where batching pays; the server batches only images of equal shape and parameters and never waits for a batch to fill, so it costs nothing when traffic is light."
  type = object({
    cpu             = optional(string, "4")
    memory          = optional(string, "16Gi")
    min_instances   = optional(number, 1)
    max_instances   = optional(number, 3)
    max_concurrency = optional(number, 8)
    max_batch_size  = optional(number, 8)
  })
  default = {}
}

variable "rtx_pro_6000_defaults" {
  description = "Size and scaling of every NVIDIA RTX PRO 6000 Blackwell region (accelerator = \"nvidia-rtx-pro-6000\") unless the region sets its own. One RTX PRO 6000 (96 GB, driver 580 / CUDA 13.0) per instance needs at least 20 CPU and 80 GiB (https://cloud.google.com/run/docs/configuring/services/gpu), billed per instance-second like the L4; the larger GPU and CPU take twice the L4's concurrent requests and batch."
  type = object({
    cpu             = optional(string, "20")
    memory          = optional(string, "80Gi")
    min_instances   = optional(number, 1)
    max_instances   = optional(number, 3)
    max_concurrency = optional(number, 16)
    max_batch_size  = optional(number, 16)
  })
  default = {}
}

variable "cpu_defaults" {
  description = "Size and scaling of every CPU region (accelerator = \"none\") unless the region sets its own: small, scale to zero, request-based billing (CPU is billed only while a request is being handled). max_batch_size is the server's MAX_BATCH_SIZE: 1 on the CPU, where batching measured no gain (docs/performance.md)."
  type = object({
    cpu             = optional(string, "2")
    memory          = optional(string, "4Gi")
    min_instances   = optional(number, 0)
    max_instances   = optional(number, 10)
    max_concurrency = optional(number, 4)
    max_batch_size  = optional(number, 1)
  })
  default = {}
}

variable "regions" {
  description = <<-EOT
    Where the endpoint runs, by region: its accelerator ("none" for CPU only, "nvidia-l4" for one NVIDIA L4 per instance,
    or "nvidia-rtx-pro-6000" for one NVIDIA RTX PRO 6000 Blackwell per instance) and, optionally, its own cpu, memory,
    min_instances, max_instances, max_concurrency and max_batch_size (else cpu_defaults, gpu_defaults or
    rtx_pro_6000_defaults, by accelerator) and its own engine (else var.engine). streams = true adds the region's stream
    service beside its endpoint (live camera streams over a WebSocket: see stream_defaults), with max_streams open
    streams per instance (else stream_defaults.max_streams, else 16 on a GPU and 2 per vCPU on the CPU).
    Example: { "us-central1" = { accelerator = "nvidia-l4", streams = true }, "europe-west4" = { accelerator = "nvidia-rtx-pro-6000" }, "europe-west3" = {} }.
    CPU and L4 regions follow Cloud Run's CPU table (https://cloud.google.com/run/docs/configuring/services/cpu): cpu 1, 2,
    4, 6 or 8; memory up to 4Gi (1 CPU), 8Gi (2), 2-16Gi (4), 4-24Gi (6), 4-32Gi (8); at least 512Mi. A GPU needs at least
    its minimum (https://cloud.google.com/run/docs/configuring/services/gpu): the L4 4 CPU and 16Gi, the RTX PRO 6000 20
    CPU and 80Gi.
  EOT
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

  validation {
    condition     = length(var.regions) > 0
    error_message = "regions must name at least one region."
  }

  validation {
    condition     = alltrue([for r, v in var.regions : contains(keys(local.accelerators), v.accelerator)])
    error_message = "regions: accelerator must be \"none\", \"nvidia-l4\" or \"nvidia-rtx-pro-6000\" (got ${join(", ", [for r, v in var.regions : "${r} = ${jsonencode(v.accelerator)}" if !contains(keys(local.accelerators), v.accelerator)])})."
  }

  validation {
    condition     = alltrue([for r, v in var.regions : contains(var.cloud_run_regions, r)])
    error_message = "regions: ${join(", ", [for r, v in var.regions : r if !contains(var.cloud_run_regions, r)])} is not a Cloud Run region (var.cloud_run_regions, from https://cloud.google.com/run/docs/locations); fix the name, or add it to cloud_run_regions if Google has opened it."
  }

  validation {
    condition     = alltrue([for r, v in var.regions : v.accelerator == "none" || !contains(keys(local.accelerators), v.accelerator) || contains(lookup(var.gpu_regions, v.accelerator, []), r)])
    error_message = "regions: ${join("; ", [for r, v in var.regions : "${r} has no Cloud Run ${v.accelerator} GPU (${v.accelerator} regions: ${join(", ", lookup(var.gpu_regions, v.accelerator, []))})" if v.accelerator != "none" && contains(keys(local.accelerators), v.accelerator) && !contains(lookup(var.gpu_regions, v.accelerator, []), r)])}. Set accelerator = \"none\" there (a CPU endpoint), choose a region or GPU that has it, or extend gpu_regions if Google has added the region."
  }

  validation {
    # Each GPU's minimum CPU and memory (local.accelerators, from https://cloud.google.com/run/docs/configuring/services/gpu).
    condition     = alltrue([for r, v in var.regions : v.accelerator == "none" || !contains(keys(local.accelerators), v.accelerator) || try(floor(tonumber(coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu))) == tonumber(coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)) && tonumber(coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)) >= local.accelerators[v.accelerator].min_cpu && (tonumber(regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[0]) * (regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[1] == "Gi" ? 1024 : 1)) >= local.accelerators[v.accelerator].min_memory_mib, false)])
    error_message = "regions: ${join("; ", [for r, v in var.regions : "${r} is below the ${v.accelerator} minimum of ${local.accelerators[v.accelerator].min_cpu} CPU and ${local.accelerators[v.accelerator].min_memory_mib / 1024}Gi (it has cpu ${coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)}, memory ${coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory)})" if v.accelerator != "none" && contains(keys(local.accelerators), v.accelerator) && !try(floor(tonumber(coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu))) == tonumber(coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)) && tonumber(coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)) >= local.accelerators[v.accelerator].min_cpu && (tonumber(regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[0]) * (regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[1] == "Gi" ? 1024 : 1)) >= local.accelerators[v.accelerator].min_memory_mib, false)])}; raise the region's cpu/memory (or gpu_defaults / rtx_pro_6000_defaults), written as a whole number of CPUs and Mi or Gi."
  }

  validation {
    # Cloud Run's CPU/memory table, in MiB (https://cloud.google.com/run/docs/configuring/services/cpu), for CPU and L4
    # regions; the RTX PRO 6000's instances are larger than the table and are held to their GPU's minimum above.
    condition     = alltrue([for r, v in var.regions : !try(local.accelerators[v.accelerator].cpu_table, false) || try(contains(keys(local.memory_limits_mib), coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)) && (tonumber(regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[0]) * (regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[1] == "Gi" ? 1024 : 1)) >= local.memory_limits_mib[coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)][0] && (tonumber(regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[0]) * (regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[1] == "Gi" ? 1024 : 1)) <= local.memory_limits_mib[coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)][1], false)])
    error_message = "regions: ${join(", ", [for r, v in var.regions : "${r} (cpu ${coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)}, memory ${coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory)})" if try(local.accelerators[v.accelerator].cpu_table, false) && !try(contains(keys(local.memory_limits_mib), coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)) && (tonumber(regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[0]) * (regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[1] == "Gi" ? 1024 : 1)) >= local.memory_limits_mib[coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)][0] && (tonumber(regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[0]) * (regex("^([0-9]+)(Mi|Gi)$", coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory))[1] == "Gi" ? 1024 : 1)) <= local.memory_limits_mib[coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)][1], false)])}: Cloud Run accepts cpu \"1\", \"2\", \"4\", \"6\" or \"8\" with memory (Mi or Gi) of 512Mi-4Gi, 512Mi-8Gi, 2Gi-16Gi, 4Gi-24Gi and 4Gi-32Gi respectively; fix the region's cpu/memory (or cpu_defaults/gpu_defaults)."
  }

  validation {
    condition = alltrue([for r, v in var.regions : (
      floor(coalesce(v.min_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).min_instances)) == coalesce(v.min_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).min_instances) &&
      coalesce(v.min_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).min_instances) >= 0 &&
      floor(coalesce(v.max_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_instances)) == coalesce(v.max_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_instances) &&
      coalesce(v.max_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_instances) >= max(1, coalesce(v.min_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).min_instances)) &&
      coalesce(v.max_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_instances) <= 1000
    )])
    error_message = "regions: min_instances must be a whole number from 0 and max_instances a whole number from max(1, min_instances) to 1000, in every region (including cpu_defaults, gpu_defaults and rtx_pro_6000_defaults)."
  }

  validation {
    condition = alltrue([for r, v in var.regions : (
      floor(coalesce(v.max_concurrency, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_concurrency)) == coalesce(v.max_concurrency, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_concurrency) &&
      coalesce(v.max_concurrency, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_concurrency) >= 1 &&
      coalesce(v.max_concurrency, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_concurrency) <= 1000
    )])
    error_message = "regions: max_concurrency must be a whole number from 1 to 1000 in every region."
  }

  validation {
    # The server's own bounds for MAX_BATCH_SIZE (function/config.py).
    condition = alltrue([for r, v in var.regions : (
      floor(coalesce(v.max_batch_size, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_batch_size)) == coalesce(v.max_batch_size, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_batch_size) &&
      coalesce(v.max_batch_size, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_batch_size) >= 1 &&
      coalesce(v.max_batch_size, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_batch_size) <= 256
    )])
    error_message = "regions: max_batch_size must be a whole number from 1 to 256 in every region (including cpu_defaults, gpu_defaults and rtx_pro_6000_defaults)."
  }

  validation {
    condition     = alltrue([for r, v in var.regions : v.engine == null ? true : contains(["default", "pytorch", "onnx", "openvino", "tensorrt", "auto"], v.engine)])
    error_message = "regions: engine must be \"default\", \"pytorch\", \"onnx\", \"openvino\", \"tensorrt\" or \"auto\" (got ${join(", ", [for r, v in var.regions : "${r} = ${jsonencode(v.engine)}" if(v.engine == null ? false : !contains(["default", "pytorch", "onnx", "openvino", "tensorrt", "auto"], v.engine))])})."
  }

  validation {
    # The stream service's max_instance_request_concurrency: Cloud Run takes 1 to 1000.
    condition     = alltrue([for r, v in var.regions : v.max_streams == null || try(floor(v.max_streams) == v.max_streams && v.max_streams >= 1 && v.max_streams <= 1000, false)])
    error_message = "regions: max_streams must be a whole number from 1 to 1000, Cloud Run's most concurrent requests per instance (got ${join(", ", [for r, v in var.regions : "${r} = ${v.max_streams}" if !(v.max_streams == null || try(floor(v.max_streams) == v.max_streams && v.max_streams >= 1 && v.max_streams <= 1000, false))])})."
  }
}

variable "stream_defaults" {
  description = <<-EOT
    The stream service of every region with streams = true: live camera streams over a WebSocket (GET /stream and
    /api/models/{id}/stream, docs/streams-cloud-run.md). It is a second Cloud Run service in the region, NAME-streams,
    with the endpoint's image, weights, identity, API keys, environment, size and probes, but its container port named
    "http1" (a WebSocket needs HTTP/1.1 end to end, which the endpoint's h2c port does not give), a request timeout of
    3600 s (Cloud Run's most, so the longest a socket stays open before the client reconnects), session affinity, and
    max_instance_request_concurrency equal to the server's MAX_STREAMS (each open socket is one request for its whole
    life). max_streams: open streams per instance, where a region sets none (null: the server's own default, 16 on a
    GPU and 2 per vCPU on the CPU). min_instances: warm instances (0 by default: nothing runs, and nothing is billed,
    while no camera is connected). max_instances: null for the region's own max_instances; on a GPU region the stream
    service's instances count against the same per-region GPU quota as the endpoint's.
  EOT
  type = object({
    max_streams   = optional(number)
    min_instances = optional(number, 0)
    max_instances = optional(number)
  })
  default = {}

  validation {
    condition     = var.stream_defaults.max_streams == null || try(floor(var.stream_defaults.max_streams) == var.stream_defaults.max_streams && var.stream_defaults.max_streams >= 1 && var.stream_defaults.max_streams <= 1000, false)
    error_message = "stream_defaults.max_streams must be a whole number from 1 to 1000 (Cloud Run's most concurrent requests per instance), or null for the server's default (16 on a GPU, 2 per vCPU on the CPU)."
  }

  validation {
    condition     = try(floor(var.stream_defaults.min_instances) == var.stream_defaults.min_instances && var.stream_defaults.min_instances >= 0 && (var.stream_defaults.max_instances == null || floor(var.stream_defaults.max_instances) == var.stream_defaults.max_instances && var.stream_defaults.max_instances >= max(1, var.stream_defaults.min_instances) && var.stream_defaults.max_instances <= 1000), false)
    error_message = "stream_defaults: min_instances must be a whole number from 0, and max_instances null (each region's own max_instances) or a whole number from max(1, min_instances) to 1000."
  }

  validation {
    # max_instances null: each stream service takes its region's max_instances, which must then hold min_instances.
    condition     = var.stream_defaults.max_instances != null || alltrue([for r, v in var.regions : !v.streams || try(coalesce(v.max_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_instances) >= var.stream_defaults.min_instances, true)])
    error_message = "stream_defaults.min_instances is above the max_instances of ${join(", ", [for r, v in var.regions : r if v.streams && !try(coalesce(v.max_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_instances) >= var.stream_defaults.min_instances, true)])}, which the stream service there takes while stream_defaults.max_instances is null: set stream_defaults.max_instances, or lower min_instances."
  }
}

variable "engine" {
  description = <<-EOT
    The server's ENGINE in every region that does not set its own (regions[*].engine): "default" (OpenVINO on CPU
    regions, compiled in f32 so its answers equal Ultralytics' own YOLO("best.pt").predict within 1e-3 px, and faster
    than PyTorch in every measured round; PyTorch on GPU regions, where TensorRT fp16 is not measured yet), "pytorch"
    (Ultralytics' answers bit for bit), "onnx", "openvino", "tensorrt", or "auto" (OpenVINO on CPU regions, TensorRT
    fp16 on GPU regions, PyTorch fp16 where the image has no TensorRT). An exported engine is built by the first
    instance that needs it, checked against PyTorch, and with weights in Cloud Storage uploaded next to them
    (gs://BUCKET/OBJECT.engines/) for every later cold start; PyTorch serves meanwhile. A region that exports grants the
    runtime identity roles/storage.objectCreator on the weights bucket, limited by an IAM condition to that prefix (the
    bucket needs uniform bucket-level access for IAM conditions; the module's own bucket has it). See the README's
    Performance section for what each engine measured.
  EOT
  type        = string
  default     = "default"

  validation {
    condition     = contains(["default", "pytorch", "onnx", "openvino", "tensorrt", "auto"], var.engine)
    error_message = "engine must be \"default\", \"pytorch\", \"onnx\", \"openvino\", \"tensorrt\" or \"auto\"."
  }
}

variable "stopped_regions" {
  description = "Regions of `regions` that are stopped: their Cloud Run service is deleted, so no instance runs and nothing is billed for it; everything else (bucket, secret, image, load balancer) stays. Owned by infra/scripts/stop.sh and start.sh."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.stopped_regions : contains(keys(var.regions), r)])
    error_message = "stopped_regions may only name regions that are in var.regions."
  }
}

variable "images" {
  description = "Container images to serve, by flavour, each by digest or tag (REGION-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG): `cpu` (the Dockerfile built with ACCELERATOR=none, CPU-only torch, far smaller) for CPU regions, `nvidia-l4` (ACCELERATOR=nvidia-l4, for the L4's driver 535 / CUDA 12.2) and `nvidia-rtx-pro-6000` (ACCELERATOR=nvidia-rtx-pro-6000, for driver 580 / CUDA 13.0) for the regions with that GPU. A region whose image is missing or empty gets no service yet: leave them all out on the very first apply, which creates only the shared resources (repository, bucket, secret, service accounts) that building an image needs."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for flavour, image in var.images : contains(["cpu", "nvidia-l4", "nvidia-rtx-pro-6000"], flavour)])
    error_message = "images: the keys are cpu, nvidia-l4 and nvidia-rtx-pro-6000 (got ${join(", ", [for flavour, image in var.images : flavour if !contains(["cpu", "nvidia-l4", "nvidia-rtx-pro-6000"], flavour)])}; the L4 image that was images.gpu is now images[\"nvidia-l4\"])."
  }

  validation {
    condition     = alltrue([for flavour, image in var.images : image == "" || can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[a-f0-9]{64})$", image))])
    error_message = "images: each image must be a full image reference with a registry host and a tag or @sha256 digest, or empty."
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

variable "models" {
  description = "More models served beside the default one (the service's MODELS, docs/models.md): model id => weights, each an object name in the weights bucket (models/abc/helmets.pt) or a gs://BUCKET/OBJECT URI. The service account may read each of these objects. Loaded on demand; bound them with MAX_LOADED_MODELS and MODEL_MEMORY_MB in extra_env. Empty: one model per endpoint."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for id, weights in var.models : can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", id)) && (
      can(regex("^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]/[^/].*[^/]$", weights)) || can(regex("^[^/].*[^/]$", weights)) && !startswith(weights, "gs://")
    )])
    error_message = "models must map ids (letters, digits, '.', '_', '-'; at most 100) to object names in the weights bucket or gs://BUCKET/OBJECT URIs."
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
  description = "true: no GPU zonal redundancy (cheaper per GPU-second, best-effort failover, its own quota). false: capacity is reserved for zonal failover at a higher price (https://cloud.google.com/run/docs/configuring/services/gpu-zonal-redundancy). Applies to every GPU region, L4 or RTX PRO 6000; request the matching quota of each GPU either way."
  type        = bool
  default     = true
}

variable "http2" {
  description = <<-EOT
    true (default): the container port is named "h2c", so Cloud Run sends requests to the container as cleartext
    HTTP/2 end to end (https://cloud.google.com/run/docs/configuring/http2); the server answers prior-knowledge h2c and
    HTTP/1.1 on the same port. Over HTTP/1 Cloud Run refuses requests larger than 32 MiB
    (https://cloud.google.com/run/quotas, request limits); end-to-end HTTP/2 has no such cap, so large images and videos
    reach the server's own limits (MAX_UPLOAD_MB). false: the port is named "http1" and Cloud Run downgrades every request
    to HTTP/1.1 (the 32 MiB cap applies); use it for an image built before the server spoke h2c. The startup and liveness
    probes (GET /readyz, /healthz) are answered either way, since the server speaks both protocols on the port.
  EOT
  type        = bool
  default     = true

  validation {
    condition     = var.http2 != null
    error_message = "http2 must be true (h2c end to end, no request-size cap) or false (HTTP/1.1, requests up to 32 MiB)."
  }
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
  description = "Additional non-secret environment variables for the service (e.g. MAX_UPLOAD_MB, LOG_LEVEL). Keys the module owns (MODEL, MODEL_ID, THREADS, ENGINE, MAX_BATCH_SIZE), keys Cloud Run reserves, and anything that would carry or bypass an API key are refused."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for k in keys(var.extra_env) : can(regex("^[A-Z_][A-Z0-9_]*$", k)) && !contains([
      "PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION", "MODEL", "MODEL_ID", "THREADS", "API_KEYS", "API_KEYS_FILE", "ALLOW_UNAUTHENTICATED",
    ], k)])
    error_message = "extra_env keys must be UPPER_SNAKE_CASE and must not be PORT, K_*, MODEL, MODEL_ID, THREADS, API_KEYS, API_KEYS_FILE or ALLOW_UNAUTHENTICATED."
  }

  validation {
    # The module sets these from its own settings (and grants the engine upload only when ENGINE asks for it).
    condition     = !contains(keys(var.extra_env), "ENGINE") && !contains(keys(var.extra_env), "MAX_BATCH_SIZE")
    error_message = "extra_env must not set ENGINE or MAX_BATCH_SIZE: use the engine variable (or regions[*].engine) and max_batch_size in cpu_defaults, gpu_defaults, rtx_pro_6000_defaults or a region."
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
  description = "Location of the Artifact Registry repository (and of Cloud Build). Empty: the first GPU region of `regions` in alphabetical order, or the first region when there is none (GPU images are the big ones to pull)."
  type        = string
  default     = ""

  validation {
    condition     = var.artifact_registry_location == "" || can(regex("^[a-z]+(-[a-z]+[0-9]+)?$", var.artifact_registry_location))
    error_message = "artifact_registry_location must be a region (us-central1) or a multi-region (us, europe, asia), or empty."
  }
}

variable "storage_location" {
  description = "Location of the buckets this module creates. Empty: the multi-region (US, EU or ASIA) of the registry region."
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

variable "canary" {
  description = <<-EOT
    A canary rollout in progress, or null (default: the release in images/model_* takes all traffic once ready).
    `stable` is the release that was serving before (its images, weights and http2, as in the variables of the same
    names; http2 defaults to var.http2);
    its revision keeps 100 - percent of the traffic (tag "stable") and the new release's revision gets `percent`
    (tag "canary", so it also has its own URL, https://canary---SERVICE-HASH.REGION.run.app). Revision names are a
    hash of everything in the revision, so the stable release's revision is found again by name. Owned by
    infra/scripts (deploy.sh --canary, promote.sh, rollback.sh).
  EOT
  type = object({
    percent = number
    stable = object({
      images              = optional(map(string), {})
      weights_bucket      = optional(string, "")
      model_object        = optional(string, "")
      model_path_in_image = optional(string, "")
      model_id            = optional(string, "")
      models              = optional(map(string), {})
      http2               = optional(bool)
    })
  })
  default = null

  validation {
    condition     = var.canary == null || try(var.canary.percent >= 1 && var.canary.percent <= 99 && floor(var.canary.percent) == var.canary.percent, false)
    error_message = "canary.percent must be a whole number from 1 to 99 (0 is no canary: set canary = null; 100 is a promotion)."
  }
}

variable "monitoring" {
  description = <<-EOT
    What Cloud Monitoring gets, all on by default: `dashboard` (requests, error ratio, P50/P95/P99 latency, instances,
    CPU/memory/GPU utilisation, and the service's own /metrics, per region and overall), `uptime_checks` (one per
    running region on GET uptime_check_path; note that on a region scaled to zero every check can start an instance,
    and a GPU one is billed while it runs), `alerts` (error ratio, P95 latency, failing uptime checks, sent to
    notification_channels) and `prometheus_sidecar` (Managed Service for Prometheus' Cloud Run sidecar, which scrapes
    the service's /metrics on port 8080 every 30 s with its default configuration).
  EOT
  type = object({
    dashboard                = optional(bool, true)
    uptime_checks            = optional(bool, true)
    alerts                   = optional(bool, true)
    prometheus_sidecar       = optional(bool, true)
    uptime_check_path        = optional(string, "/readyz")
    uptime_check_period      = optional(string, "300s")
    error_ratio_threshold    = optional(number, 0.05)
    p95_latency_threshold_ms = optional(number, 2000)
    alert_duration           = optional(string, "300s")
    prometheus_sidecar_image = optional(string, "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0")
  })
  default = {}

  validation {
    condition     = var.monitoring.error_ratio_threshold > 0 && var.monitoring.error_ratio_threshold < 1
    error_message = "monitoring.error_ratio_threshold is a fraction between 0 and 1 (0.05 = 5% of requests answered 5xx)."
  }

  validation {
    condition     = var.monitoring.p95_latency_threshold_ms > 0
    error_message = "monitoring.p95_latency_threshold_ms must be a positive number of milliseconds."
  }

  validation {
    condition     = contains(["60s", "300s", "600s", "900s"], var.monitoring.uptime_check_period) && can(regex("^[0-9]+s$", var.monitoring.alert_duration))
    error_message = "monitoring.uptime_check_period must be 60s, 300s, 600s or 900s (what Cloud Monitoring allows) and alert_duration a number of seconds such as 300s."
  }

  validation {
    condition     = startswith(var.monitoring.uptime_check_path, "/")
    error_message = "monitoring.uptime_check_path must start with /."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels the alert policies notify, as projects/PROJECT/notificationChannels/ID (create them in the console or with google_monitoring_notification_channel). Empty: the policies open incidents that nobody is sent."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "notification_channels must be full names such as projects/my-project/notificationChannels/1234567890."
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

variable "batch_jobs" {
  description = <<-EOT
    Cloud Run Jobs for bulk inference (docs/batch.md), one per region that wants one (the key: a Cloud Run region):
    `python -m function batch` in the endpoint's image with its weights, over input (gs://BUCKET/PREFIX) into output
    (gs://BUCKET/PREFIX). accelerator is "none" or "nvidia-l4" (one L4 per task; default: the region's endpoint's, else
    "none"); cpu and memory default to cpu_defaults or gpu_defaults. task_count (1-10000) tasks per execution,
    parallelism (0: no limit) at once, max_retries (0-10) per task, task_timeout_seconds per attempt. `make batch`
    sets the entry of its REGION and runs an execution. The tasks' identity reads the weights and the input buckets and
    creates objects only under the output prefixes. Empty (default): no job and no batch identity.
  EOT
  type = map(object({
    input                = string
    output               = string
    accelerator          = optional(string)
    cpu                  = optional(string)
    memory               = optional(string)
    batch_args           = optional(list(string), [])
    task_count           = optional(number, 10)
    parallelism          = optional(number, 0)
    max_retries          = optional(number, 3)
    task_timeout_seconds = optional(number, 3600)
  }))
  default = {}

  validation {
    condition     = alltrue([for r, j in var.batch_jobs : can(regex("^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$", j.input)) && can(regex("^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$", j.output))])
    error_message = "batch_jobs: input and output must be gs://BUCKET/PREFIX in every job."
  }

  validation {
    condition     = alltrue([for r, j in var.batch_jobs : !startswith(trimsuffix(j.output, "/"), "${trimsuffix(j.input, "/")}/") && trimsuffix(j.output, "/") != trimsuffix(j.input, "/")])
    error_message = "batch_jobs: output must not be inside input (the results would become input)."
  }

  validation {
    condition     = alltrue([for r, j in var.batch_jobs : j.accelerator == null || contains(["none", "nvidia-l4"], coalesce(j.accelerator, "none"))])
    error_message = "batch_jobs: accelerator must be \"none\" or \"nvidia-l4\" (the GPU Cloud Run Jobs offer)."
  }

  validation {
    condition = alltrue([for r, j in var.batch_jobs :
      j.task_count == floor(j.task_count) && j.task_count >= 1 && j.task_count <= 10000 &&
      j.parallelism == floor(j.parallelism) && j.parallelism >= 0 && j.parallelism <= 10000 &&
      j.max_retries == floor(j.max_retries) && j.max_retries >= 0 && j.max_retries <= 10 &&
      j.task_timeout_seconds == floor(j.task_timeout_seconds) && j.task_timeout_seconds >= 1 && j.task_timeout_seconds <= 604800
    ])
    error_message = "batch_jobs: task_count must be 1-10000, parallelism 0-10000, max_retries 0-10 and task_timeout_seconds 1-604800 (168 hours), whole numbers."
  }
}
