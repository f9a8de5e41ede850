resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset(local.apis) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# ---------------------------------------------------------------------------------------------
# Identities. The runtime account holds no project role but writing metrics: resource-level grants
# below (read the weights, read the API-key secret, and with an exported engine create objects
# under the weights' .engines/ prefix) are everything the service can do.
# Cloud Run's own service agent pulls the image from the same project's Artifact Registry.
# ---------------------------------------------------------------------------------------------

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name}-run"
  display_name = "YOLO endpoint ${var.name} (Cloud Run runtime)"
  description  = "Identity of the ${var.name} Cloud Run services: reads the weights object's bucket and the API-key secret; with an exported engine, creates objects under the weights' .engines/ prefix. Nothing else."

  depends_on = [google_project_service.apis]

  lifecycle {
    precondition {
      condition     = alltrue([for flavour, image in var.images : image == ""]) || ((var.model_object != "") != (var.model_path_in_image != ""))
      error_message = "Set exactly one of model_object (weights in the bucket) and model_path_in_image (weights baked into the image) once an image is given."
    }
    precondition {
      condition     = length([for r in local.running_regions : r if lookup(var.images, local.settings[r].kind, "") == ""]) == 0
      error_message = "Every running region needs the image of its flavour (images.cpu for CPU regions, images[\"nvidia-l4\"] and images[\"nvidia-rtx-pro-6000\"] for the regions with that GPU)."
    }
    precondition {
      condition     = var.public_access || length(var.invoker_members) > 0
      error_message = "public_access = false needs at least one entry in invoker_members, or nobody can call the service."
    }
  }
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name}-build"
  display_name = "YOLO endpoint ${var.name} (Cloud Build)"
  description  = "Identity of the Cloud Build that builds the ${var.name} image: reads the build-source bucket, pushes to the one repository, writes build logs."

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------

resource "google_storage_bucket" "weights" {
  # checkov:skip=CKV_GCP_62:Access logs would need a second bucket; reads are by one service account and visible in Cloud Audit Logs (Data Access) if enabled.
  count = local.create_weights_bucket ? 1 : 0

  project                     = var.project_id
  name                        = local.weights_bucket
  location                    = local.storage_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = true
  }

  depends_on = [google_project_service.apis]
}

# One grant per bucket a serving revision reads: the release's, and during a canary the stable
# release's too.
resource "google_storage_bucket_iam_member" "runtime_reads_weights" {
  for_each = local.weights_buckets_read

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = google_service_account.runtime.member

  depends_on = [google_storage_bucket.weights]
}

# The weights of var.models in buckets the grant above does not cover: read access to exactly those
# objects (local.model_read_conditions), nothing else in the bucket.
resource "google_storage_bucket_iam_member" "runtime_reads_models" {
  for_each = local.model_read_conditions

  bucket = each.key
  role   = "roles/storage.objectViewer"
  member = google_service_account.runtime.member

  condition {
    title       = "model-weights-only"
    description = "Read only the weights objects named in var.models (MODELS)."
    expression  = each.value
  }

  depends_on = [google_storage_bucket.weights]
}

# Exported engines (var.engine or a region's engine other than "pytorch"): the first instance that
# builds one uploads it next to the weights, gs://BUCKET/OBJECT.engines/, so later cold starts
# download it instead of rebuilding (a TensorRT build takes minutes). Storage Object Creator is the
# least role with storage.objects.create, and the condition limits it to that prefix of each
# serving release's weights (local.engine_upload_conditions: resource.name.startsWith over
# projects/_/buckets/BUCKET/objects/OBJECT.engines/, the name format of
# https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name, as in
# https://cloud.google.com/storage/docs/samples/storage-add-bucket-conditional-iam-binding).
# IAM conditions on a bucket need uniform bucket-level access
# (https://cloud.google.com/storage/docs/access-control/iam#conditions): the module's own bucket
# has it; a weights_bucket of yours must too. No delete, so no overwrite: an object already there
# is kept (the server uploads with ifGenerationMatch=0), and a corrupt one is logged by the server
# and left for an operator to remove (`gcloud storage rm`). Only while some region exports an
# engine; PyTorch never uploads, so a deployment serving only PyTorch holds no write access at all.
resource "google_storage_bucket_iam_member" "runtime_writes_engines" {
  for_each = local.engine_upload_conditions

  bucket = each.key
  role   = "roles/storage.objectCreator"
  member = google_service_account.runtime.member

  condition {
    title       = "exported-engines-only"
    description = "Create objects only under the weights' .engines/ prefix (exported ONNX/OpenVINO/TensorRT engines)."
    expression  = each.value
  }

  depends_on = [google_storage_bucket.weights]
}

# The Prometheus sidecar writes the service's /metrics to Cloud Monitoring as the runtime
# identity; metric writing has no narrower scope than the project.
resource "google_project_iam_member" "runtime_writes_metrics" {
  count = var.monitoring.prometheus_sidecar ? 1 : 0

  project = var.project_id
  role    = "roles/monitoring.metricWriter"
  member  = google_service_account.runtime.member
}

# ---------------------------------------------------------------------------------------------
# API keys: the secret is created here, its versions are not. deploy.sh adds the first version
# straight from a random generator with `gcloud secrets versions add --data-file=-`, so no key is
# ever a Terraform value, a state attribute, an output, or an environment variable.
# ---------------------------------------------------------------------------------------------

resource "google_secret_manager_secret" "api_keys" {
  project   = var.project_id
  secret_id = "${var.name}-api-keys"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "runtime_reads_api_keys" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.api_keys.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}

# ---------------------------------------------------------------------------------------------
# Image: repository, and the build identity's three grants.
# ---------------------------------------------------------------------------------------------

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84:Google-managed encryption; the images hold no secret (weights and keys live elsewhere), CMEK is left to the user.
  project       = var.project_id
  location      = local.registry_region
  repository_id = var.name
  description   = "Images of the ${var.name} YOLO endpoint"
  format        = "DOCKER"
  labels        = local.labels

  # deploy.sh tags each image with a hash of its build context, so a tag never needs to move.
  docker_config {
    immutable_tags = true
  }

  # Images are several GB (CUDA torch): keep the 5 newest, delete the rest after 30 days.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "30d"
    }
  }
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository_iam_member" "build_pushes_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

resource "google_storage_bucket" "build_source" {
  # checkov:skip=CKV_GCP_62:Transient Cloud Build sources, deleted after 7 days; access logs would need a second bucket.
  # checkov:skip=CKV_GCP_78:Versioning would only keep transient build sources longer.
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name}-build"
  location                    = local.storage_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # build sources only, deleted after a week anyway
  labels                      = local.labels

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.build_source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

# A build run as a user-chosen service account must write its logs itself (cloudbuild.yaml uses
# CLOUD_LOGGING_ONLY); log writing has no narrower scope than the project.
resource "google_project_iam_member" "build_writes_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# ---------------------------------------------------------------------------------------------
# One Cloud Run service per running region: CPU only, an NVIDIA L4 or an RTX PRO 6000, as var.regions says.
# ---------------------------------------------------------------------------------------------

module "endpoint" {
  source   = "./modules/endpoint"
  for_each = toset(local.running_regions)

  project_id          = var.project_id
  region              = each.value
  name                = var.name
  revision            = local.revisions[each.value].candidate
  revision_name       = local.revision_names[each.value].candidate
  traffic             = local.traffic[each.value]
  min_instances       = local.settings[each.value].min_instances
  max_instances       = local.settings[each.value].max_instances
  public_access       = var.public_access
  invoker_members     = var.invoker_members
  ingress             = var.ingress
  labels              = local.labels
  deletion_protection = var.deletion_protection

  # A revision whose identity cannot yet read the weights or the keys would fail its startup probe.
  depends_on = [
    google_service_account.runtime,
    google_storage_bucket_iam_member.runtime_reads_weights,
    google_storage_bucket_iam_member.runtime_writes_engines,
    google_secret_manager_secret_iam_member.runtime_reads_api_keys,
    google_project_iam_member.runtime_writes_metrics,
  ]
}

# Live camera streams (regions[*].streams = true): a second service per such region, NAME-streams, built by the same
# module from local.stream_revisions (the endpoint's revision with an http1 port, an hour's timeout, session affinity
# and concurrency = MAX_STREAMS), with scaling of its own and the endpoint's access and canary. It follows the
# endpoints (and so the same grants): a release is rolled out to the stream services once the endpoints' revisions
# are ready, so a revision that cannot start fails on the endpoints and the streams keep serving the one before.
module "streams" {
  source   = "./modules/endpoint"
  for_each = toset(local.stream_regions)

  project_id          = var.project_id
  region              = each.value
  name                = "${var.name}-streams"
  description         = "YOLO live streams over a WebSocket (GET /stream) on ${local.settings[each.value].label}"
  revision            = local.stream_revisions[each.value].candidate
  revision_name       = local.stream_revision_names[each.value].candidate
  traffic             = local.stream_traffic[each.value]
  min_instances       = local.settings[each.value].streams.min_instances
  max_instances       = local.settings[each.value].streams.max_instances
  public_access       = var.public_access
  invoker_members     = var.invoker_members
  ingress             = var.ingress
  labels              = local.labels
  deletion_protection = var.deletion_protection

  depends_on = [module.endpoint]
}

# Bulk inference: a Cloud Run Job per region of var.batch_jobs, in the endpoint's image with its weights; its
# identity and grants are in batch.tf.
module "batch_job" {
  source   = "./modules/job"
  for_each = local.batch_regions

  project_id           = var.project_id
  region               = each.value
  name                 = "${var.name}-batch"
  image                = var.images[local.batch_flavour[each.value]]
  accelerator          = local.batch_jobs[each.value].accelerator
  cpu                  = coalesce(local.batch_jobs[each.value].cpu, local.kind_defaults[local.batch_jobs[each.value].accelerator].cpu)
  memory               = coalesce(local.batch_jobs[each.value].memory, local.kind_defaults[local.batch_jobs[each.value].accelerator].memory)
  service_account      = google_service_account.batch[0].email
  model                = local.model
  input                = local.batch_jobs[each.value].input
  output               = local.batch_jobs[each.value].output
  batch_args           = local.batch_jobs[each.value].batch_args
  task_count           = local.batch_jobs[each.value].task_count
  parallelism          = local.batch_jobs[each.value].parallelism
  max_retries          = local.batch_jobs[each.value].max_retries
  task_timeout_seconds = local.batch_jobs[each.value].task_timeout_seconds
  # As the region's endpoint when it runs the same accelerator, else that accelerator's defaults.
  env = {
    ENGINE         = try(local.settings[each.value].accelerator == local.batch_jobs[each.value].accelerator ? local.settings[each.value].engine : var.engine, var.engine)
    MAX_BATCH_SIZE = tostring(try(local.settings[each.value].accelerator == local.batch_jobs[each.value].accelerator ? local.settings[each.value].max_batch_size : local.kind_defaults[local.batch_jobs[each.value].accelerator].max_batch_size, local.kind_defaults[local.batch_jobs[each.value].accelerator].max_batch_size))
  }
  labels = local.labels

  depends_on = [
    google_storage_bucket_iam_member.batch_reads_weights,
    google_storage_bucket_iam_member.batch_reads_input,
    google_storage_bucket_iam_member.batch_reads_output,
    google_storage_bucket_iam_member.batch_writes_output,
  ]
}
