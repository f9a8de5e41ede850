# Every value derived from the variables alone lives here, so tests can evaluate this file with
# real Terraform and no provider (tests/test_infra.py copies it beside variables.tf).
locals {
  # Regions that get a Cloud Run service now. None before the first image exists (see var.image),
  # and none for the regions stop.sh has stopped.
  running_regions = var.image == "" ? [] : [for r in var.regions : r if !contains(var.stopped_regions, r)]

  continent        = split("-", var.regions[0])[0]
  storage_location = var.storage_location != "" ? var.storage_location : lookup({ us = "US", northamerica = "US", southamerica = "US", europe = "EU", asia = "ASIA", australia = "ASIA", me = "EU", africa = "EU" }, local.continent, "US")
  registry_region  = var.artifact_registry_location != "" ? var.artifact_registry_location : var.regions[0]

  create_weights_bucket = var.weights_bucket == ""
  weights_bucket        = local.create_weights_bucket ? "${var.project_id}-${var.name}-weights" : var.weights_bucket
  weights_in_bucket     = var.model_path_in_image == ""
  model                 = local.weights_in_bucket ? "gs://${local.weights_bucket}/${var.model_object}" : var.model_path_in_image

  labels = merge(var.labels, { app = var.name, managed-by = "terraform" })

  # Plain environment of every region's service: defaults that extra_env may override, then the
  # keys the module owns. The API keys are not here: they are a Secret Manager secret mounted as a
  # file, and API_KEYS_FILE (set by the endpoint module) names it.
  env = merge(
    {
      MODEL_CACHE_DIR = "/tmp/model-cache"
      YOLO_CONFIG_DIR = "/tmp/Ultralytics"
      YOLO_OFFLINE    = "true" # the weights come from the bucket or the image, never from a hub
    },
    var.extra_env,
    {
      MODEL   = local.model
      THREADS = tostring(var.max_concurrency)
    },
    var.model_id == "" ? {} : { MODEL_ID = var.model_id },
  )

  load_balancer = length(var.lb_domains) > 0

  apis = concat(
    [
      "run.googleapis.com", "artifactregistry.googleapis.com", "cloudbuild.googleapis.com", "secretmanager.googleapis.com",
      "storage.googleapis.com", "iam.googleapis.com", "logging.googleapis.com", "cloudresourcemanager.googleapis.com",
    ],
    local.load_balancer ? ["compute.googleapis.com"] : [],
  )
}
