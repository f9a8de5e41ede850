# Every value derived from the variables alone lives here, so tests can evaluate this file with
# real Terraform and no provider (tests/test_infra.py copies it beside variables.tf): each
# region's settings, the services' environment, revision names and traffic.
locals {
  # Cloud Run's CPU/memory table in MiB, by CPU count (https://cloud.google.com/run/docs/configuring/services/cpu).
  memory_limits_mib = { "1" = [512, 4096], "2" = [512, 8192], "4" = [2048, 16384], "6" = [4096, 24576], "8" = [4096, 32768] }

  # What each accelerator value means: the flavour of image it runs (images[flavour]), a label for people, and the
  # GPU's minimum instance size (https://cloud.google.com/run/docs/configuring/services/gpu: the L4, 24 GB, driver 535
  # / CUDA 12.2, at least 4 CPU and 16 GiB; the RTX PRO 6000 Blackwell, 96 GB, driver 580 / CUDA 13.0, at least 20 CPU
  # and 80 GiB). cpu_table: sizes follow Cloud Run's CPU table above (the RTX PRO 6000's 20+ CPUs are beyond it).
  accelerators = {
    "none"                = { flavour = "cpu", label = "CPU", min_cpu = 0, min_memory_mib = 0, cpu_table = true }
    "nvidia-l4"           = { flavour = "nvidia-l4", label = "NVIDIA L4", min_cpu = 4, min_memory_mib = 16384, cpu_table = true }
    "nvidia-rtx-pro-6000" = { flavour = "nvidia-rtx-pro-6000", label = "NVIDIA RTX PRO 6000", min_cpu = 20, min_memory_mib = 81920, cpu_table = false }
  }
  # Each accelerator's defaults. (Validations of var.regions read this and local.accelerators, never local.settings,
  # which depends on var.regions itself.)
  kind_defaults = {
    "none"                = var.cpu_defaults
    "nvidia-l4"           = var.gpu_defaults
    "nvidia-rtx-pro-6000" = var.rtx_pro_6000_defaults
  }

  # Each region's effective settings: its own, else the defaults of its accelerator. kind is the image flavour: cpu,
  # nvidia-l4 or nvidia-rtx-pro-6000.
  settings = { for region, v in var.regions : region => {
    kind            = lookup(local.accelerators, v.accelerator, local.accelerators["none"]).flavour
    label           = lookup(local.accelerators, v.accelerator, local.accelerators["none"]).label
    accelerator     = v.accelerator
    cpu             = coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)
    memory          = coalesce(v.memory, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).memory)
    min_instances   = coalesce(v.min_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).min_instances)
    max_instances   = coalesce(v.max_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_instances)
    max_concurrency = coalesce(v.max_concurrency, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_concurrency)
    max_batch_size  = coalesce(v.max_batch_size, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_batch_size)
    # "default" is written out as the server's own choice on that kind: auto (OpenVINO) on the CPU, PyTorch on a GPU.
    engine = lookup({ default = lookup(local.accelerators, v.accelerator, local.accelerators["none"]).flavour == "cpu" ? "auto" : "pytorch" },
    coalesce(v.engine, var.engine), coalesce(v.engine, var.engine))
    # The region's stream service (streams = true), or null. max_streams is both the server's MAX_STREAMS and the
    # service's max_instance_request_concurrency; where nothing sets it, the server's own default written out: 16 on a
    # GPU, 2 per vCPU on the CPU (function/core/streams.py, default_max_streams).
    streams = v.streams ? {
      max_streams = coalesce(v.max_streams, var.stream_defaults.max_streams,
      lookup(local.accelerators, v.accelerator, local.accelerators["none"]).flavour == "cpu" ? try(2 * tonumber(coalesce(v.cpu, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).cpu)), 1) : 16)
      min_instances = var.stream_defaults.min_instances
      max_instances = coalesce(var.stream_defaults.max_instances, v.max_instances, lookup(local.kind_defaults, v.accelerator, var.cpu_defaults).max_instances)
    } : null
  } }

  gpu_regions_used = sort([for region, s in local.settings : region if s.kind != "cpu"])
  # Regions that get a Cloud Run service now: their flavour's image exists (none before the first
  # build, see var.images) and stop.sh has not stopped them.
  running_regions = sort([for region, s in local.settings : region if lookup(var.images, s.kind, "") != "" && !contains(var.stopped_regions, region)])

  registry_region  = var.artifact_registry_location != "" ? var.artifact_registry_location : (length(local.gpu_regions_used) > 0 ? local.gpu_regions_used[0] : sort(keys(var.regions))[0])
  continent        = split("-", local.registry_region)[0]
  storage_location = var.storage_location != "" ? var.storage_location : lookup({ us = "US", northamerica = "US", southamerica = "US", europe = "EU", asia = "ASIA", australia = "ASIA", me = "EU", africa = "EU" }, local.continent, "US")

  create_weights_bucket  = var.weights_bucket == ""
  default_weights_bucket = "${var.project_id}-${var.name}-weights"
  weights_bucket         = local.create_weights_bucket ? local.default_weights_bucket : var.weights_bucket

  # Names the resources in main.tf get, by the same formulas, so revision names (below) can be
  # computed from the variables alone.
  runtime_service_account = "${var.name}-run@${var.project_id}.iam.gserviceaccount.com"
  api_keys_secret         = "${var.name}-api-keys"

  labels = merge(var.labels, { app = var.name, managed-by = "terraform" })

  # What a revision serves: the images and the weights. The candidate is the release in the
  # variables; during a canary the stable one is var.canary.stable.
  releases = merge(
    {
      candidate = {
        images              = var.images
        weights_bucket      = var.weights_bucket
        model_object        = var.model_object
        model_path_in_image = var.model_path_in_image
        model_id            = var.model_id
        models              = var.models
        http2               = var.http2
      }
    },
    var.canary == null ? {} : { stable = merge(var.canary.stable, { http2 = coalesce(var.canary.stable.http2, var.http2) }) },
  )
  release_buckets = { for name, r in local.releases : name => (r.weights_bucket != "" ? r.weights_bucket : local.default_weights_bucket) }
  release_models = { for name, r in local.releases : name => (
    r.model_path_in_image != "" ? r.model_path_in_image : "gs://${local.release_buckets[name]}/${r.model_object}"
  ) }
  # Buckets whose weights some serving revision reads.
  weights_buckets_read = toset([for name, r in local.releases : local.release_buckets[name] if r.model_path_in_image == ""])
  # MODELS (var.models): each id's weights as gs://BUCKET/OBJECT; an object name is in the release's weights bucket.
  release_model_uris = { for name, r in local.releases : name => {
    for id, weights in r.models : id => startswith(weights, "gs://") ? weights : "gs://${local.release_buckets[name]}/${weights}"
  } }
  model_objects = distinct(flatten([for name, uris in local.release_model_uris : [
    for id, uri in uris : { bucket = regex("^gs://([^/]+)/(.+)$", uri)[0], object = regex("^gs://([^/]+)/(.+)$", uri)[1] }
  ]]))
  # Each of those objects readable by the runtime identity: in a bucket it already reads, nothing more; elsewhere, per
  # bucket, Storage Object Viewer with a condition naming exactly those objects (the same name format as below).
  model_read_conditions = { for bucket in distinct([for o in local.model_objects : o.bucket if !contains(local.weights_buckets_read, o.bucket)]) : bucket => join(" || ", [
    for object in sort(distinct([for o in local.model_objects : o.object if o.bucket == bucket])) :
    "resource.name == ${jsonencode("projects/_/buckets/${bucket}/objects/${object}")}"
  ]) }

  # Exported engines (ENGINE other than pytorch): the server uploads what it builds from
  # gs://BUCKET/OBJECT to gs://BUCKET/OBJECT.engines/KEY.SUFFIX (function/engines.py, EngineCache),
  # so the runtime identity may create objects there and nowhere else: per bucket, one IAM
  # condition over the prefixes of every serving release's weights in it. Object names in
  # conditions are projects/_/buckets/BUCKET/objects/OBJECT
  # (https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name); each name is
  # written with jsonencode, whose escapes are valid in a CEL string literal. Nothing when every
  # region serves PyTorch, which never uploads (GPU-only deployments, by default).
  exports_engines = anytrue([for region, s in local.settings : s.engine != "pytorch"])
  engine_prefixes = concat(
    [for name, r in local.releases : { bucket = local.release_buckets[name], prefix = "${r.model_object}.engines/" } if r.model_path_in_image == "" && r.model_object != ""],
    [for o in local.model_objects : { bucket = o.bucket, prefix = "${o.object}.engines/" }],
  )
  engine_upload_conditions = local.exports_engines ? {
    for bucket in distinct([for p in local.engine_prefixes : p.bucket]) : bucket => join(" || ", [
      for prefix in sort(distinct([for p in local.engine_prefixes : p.prefix if p.bucket == bucket])) :
      "resource.name.startsWith(${jsonencode("projects/_/buckets/${bucket}/objects/${prefix}")})"
    ])
  } : {}
  model             = local.release_models["candidate"]
  weights_in_bucket = var.model_path_in_image == ""

  # Everything a revision is made of, per running region and release. The endpoint module builds
  # the revision from exactly this object, and its name is a hash of it: the same inputs give the
  # same revision name (so a re-apply or a rollback finds the existing revision), and any change
  # gives a new one (Cloud Run refuses an existing name with a different configuration).
  #
  # The container port is named "h2c" (HTTP/2 end to end) when the release's http2 is true; the
  # key is left out of an HTTP/1 revision, so the revisions deployed before this setting existed
  # keep their names (and a canary's stable revision is still found by its name).
  revisions = { for region in local.running_regions : region => { for name, r in local.releases : name => merge({
    image                         = lookup(r.images, local.settings[region].kind, "")
    accelerator                   = local.settings[region].accelerator
    cpu                           = local.settings[region].cpu
    memory                        = local.settings[region].memory
    cpu_idle                      = local.settings[region].kind == "cpu" # request-based billing for CPU, instance-based for GPU
    gpu_zonal_redundancy_disabled = local.settings[region].kind == "cpu" ? null : var.gpu_zonal_redundancy_disabled
    max_concurrency               = local.settings[region].max_concurrency
    timeout_seconds               = var.request_timeout_seconds
    service_account               = local.runtime_service_account
    api_keys_secret               = local.api_keys_secret
    api_keys_secret_version       = var.api_keys_secret_version
    startup_probe                 = var.startup_probe
    liveness_probe                = var.liveness_probe
    labels                        = local.labels
    prometheus_sidecar_image      = var.monitoring.prometheus_sidecar ? var.monitoring.prometheus_sidecar_image : ""
    # Plain environment: defaults that extra_env may override, then the keys the module owns. The
    # API keys are not here: they are a Secret Manager secret mounted as a file (API_KEYS_FILE).
    env = merge(
      {
        MODEL_CACHE_DIR = "/tmp/model-cache"
        YOLO_CONFIG_DIR = "/tmp/Ultralytics"
        YOLO_OFFLINE    = "true" # the weights come from the bucket or the image, never from a hub
      },
      var.extra_env,
      {
        MODEL          = local.release_models[name]
        THREADS        = tostring(local.settings[region].max_concurrency)
        ENGINE         = local.settings[region].engine
        MAX_BATCH_SIZE = tostring(local.settings[region].max_batch_size)
      },
      r.model_id == "" ? {} : { MODEL_ID = r.model_id },
      length(r.models) == 0 ? {} : { MODELS = join(",", [for id, uri in local.release_model_uris[name] : "${id}=${uri}"]) },
    )
  }, r.http2 ? { http2 = true } : {}) } }
  revision_names = { for region, by_release in local.revisions : region => {
    for name, revision in by_release : name => "${var.name}-${substr(sha256(jsonencode(revision)), 0, 10)}"
  } }

  # Live streams (regions[*].streams): per running region that has them and per release, the endpoint's revision
  # with what a WebSocket needs (docs/streams-cloud-run.md). The port is http1 (no http2 key: a WebSocket is an
  # HTTP/1.1 upgrade, which h2c end to end does not carry), the request timeout Cloud Run's most (a socket is one
  # request for its whole life), session affinity on (a reconnect finds its instance again, best effort), and one
  # request slot per open stream: max_instance_request_concurrency = MAX_STREAMS, with a CPU thread each (THREADS, at
  # most the server's 256). Each stream has at most one frame admitted at a time, so MAX_QUEUE is raised to
  # MAX_STREAMS where that is above the server's default of 32, unless extra_env sets it.
  stream_regions         = sort([for region in local.running_regions : region if local.settings[region].streams != null])
  stream_timeout_seconds = 3600
  stream_revisions = { for region in local.stream_regions : region => { for name, revision in local.revisions[region] : name => merge(
    { for key, value in revision : key => value if key != "http2" },
    {
      max_concurrency  = local.settings[region].streams.max_streams
      timeout_seconds  = local.stream_timeout_seconds
      session_affinity = true
      env = merge(
        revision.env,
        { MAX_STREAMS = tostring(local.settings[region].streams.max_streams), THREADS = tostring(min(local.settings[region].streams.max_streams, 256)) },
        local.settings[region].streams.max_streams > 32 && !contains(keys(var.extra_env), "MAX_QUEUE") ? { MAX_QUEUE = tostring(local.settings[region].streams.max_streams) } : {},
      )
    },
  ) } }
  stream_revision_names = { for region, by_release in local.stream_revisions : region => {
    for name, revision in by_release : name => "${var.name}-streams-${substr(sha256(jsonencode(revision)), 0, 10)}"
  } }

  # Traffic of each running region's endpoint and stream service: a canary splits both alike. Without a canary (or
  # when the canary changes nothing), Cloud Run's default: the latest revision takes everything once its startup
  # probe passes.
  service_traffic = { for service, by_region in { endpoint = local.revision_names, streams = local.stream_revision_names } : service => {
    for region, names in by_region : region => (
      var.canary == null || try(names.stable == names.candidate, true) ? [
        { type = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", revision = null, percent = 100, tag = null },
        ] : [
        { type = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", revision = names.stable, percent = 100 - var.canary.percent, tag = "stable" },
        { type = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", revision = names.candidate, percent = var.canary.percent, tag = "canary" },
      ]
    )
  } }
  traffic        = local.service_traffic.endpoint
  stream_traffic = local.service_traffic.streams

  load_balancer = length(var.lb_domains) > 0

  apis = concat(
    [
      "run.googleapis.com", "artifactregistry.googleapis.com", "cloudbuild.googleapis.com", "secretmanager.googleapis.com",
      "storage.googleapis.com", "iam.googleapis.com", "logging.googleapis.com", "cloudresourcemanager.googleapis.com",
      "monitoring.googleapis.com",
    ],
    local.load_balancer ? ["compute.googleapis.com"] : [],
  )
}

locals {
  # Batch jobs (batch.tf): each region's job with its accelerator resolved and its prefixes ending in "/".
  batch_jobs = { for region, j in var.batch_jobs : region => merge(j, {
    accelerator = coalesce(j.accelerator, try(var.regions[region].accelerator == "nvidia-l4" ? "nvidia-l4" : "none", "none"))
    input       = "${trimsuffix(j.input, "/")}/"
    output      = "${trimsuffix(j.output, "/")}/"
  }) }
  batch_flavour = { for region, j in local.batch_jobs : region => local.accelerators[j.accelerator].flavour }
  # Jobs whose image exists (none before the first build, as for the services).
  batch_regions       = toset([for region, j in local.batch_jobs : region if lookup(var.images, local.batch_flavour[region], "") != ""])
  batch_input_buckets = toset([for region, j in local.batch_jobs : regex("^gs://([^/]+)/", j.input)[0]])
  # Per output bucket, one IAM condition over the output prefixes in it (object names as in the engines' condition).
  batch_output_conditions = { for bucket in distinct([for region, j in local.batch_jobs : regex("^gs://([^/]+)/", j.output)[0]]) : bucket => join(" || ", [
    for prefix in sort(distinct([for region, j in local.batch_jobs : regex("^gs://[^/]+/(.*)$", j.output)[0] if regex("^gs://([^/]+)/", j.output)[0] == bucket])) :
    "resource.name.startsWith(${jsonencode("projects/_/buckets/${bucket}/objects/${prefix}")})"
  ]) }
}
