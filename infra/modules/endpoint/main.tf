locals {
  port              = 8080
  api_keys_dir      = "/secrets/api-keys"
  api_keys_filename = "keys"
}

resource "google_cloud_run_v2_service" "this" {
  project     = var.project_id
  name        = var.name
  location    = var.region
  description = "YOLO inference endpoint on an NVIDIA L4"
  ingress     = var.ingress
  labels      = var.labels

  deletion_protection = var.deletion_protection

  # Public only because the service checks an API key on every predict request (API_KEYS_FILE
  # below; the service refuses to start on Cloud Run without keys). Disabling the invoker check
  # rather than granting allUsers also works under the "Domain restricted sharing" org policy.
  invoker_iam_disabled = var.public_access

  # Service-level scaling applies at once, without a new revision.
  scaling {
    min_instance_count = var.min_instances
    max_instance_count = var.max_instances
  }

  template {
    service_account                  = var.service_account_email
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    max_instance_request_concurrency = var.max_concurrency
    timeout                          = "${var.request_timeout_seconds}s"
    gpu_zonal_redundancy_disabled    = var.gpu_zonal_redundancy_disabled
    labels                           = var.labels

    node_selector {
      accelerator = "nvidia-l4"
    }

    containers {
      name  = "yolo"
      image = var.image

      ports {
        name           = "http1"
        container_port = local.port
      }

      resources {
        limits = {
          cpu              = var.cpu
          memory           = var.memory
          "nvidia.com/gpu" = "1"
        }
        # GPU services need instance-based billing: CPU stays allocated outside requests.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = var.env
        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name  = "API_KEYS_FILE"
        value = "${local.api_keys_dir}/${local.api_keys_filename}"
      }

      volume_mounts {
        name       = "api-keys"
        mount_path = local.api_keys_dir
      }

      # 503 until the weights are downloaded, on the GPU and warmed; Cloud Run sends no traffic before.
      startup_probe {
        initial_delay_seconds = var.startup_probe.initial_delay_seconds
        period_seconds        = var.startup_probe.period_seconds
        timeout_seconds       = var.startup_probe.timeout_seconds
        failure_threshold     = var.startup_probe.failure_threshold

        http_get {
          path = "/readyz"
          port = local.port
        }
      }

      liveness_probe {
        period_seconds    = var.liveness_probe.period_seconds
        timeout_seconds   = var.liveness_probe.timeout_seconds
        failure_threshold = var.liveness_probe.failure_threshold

        http_get {
          path = "/healthz"
          port = local.port
        }
      }
    }

    volumes {
      name = "api-keys"
      secret {
        secret       = var.api_keys_secret
        default_mode = 292 # 0444: the image runs as a non-root user
        items {
          version = var.api_keys_secret_version
          path    = local.api_keys_filename
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }
}

resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = var.public_access ? toset([]) : toset(var.invoker_members)

  project  = var.project_id
  location = google_cloud_run_v2_service.this.location
  name     = google_cloud_run_v2_service.this.name
  role     = "roles/run.invoker"
  member   = each.value
}
