locals {
  port              = 8080
  api_keys_dir      = "/secrets/api-keys"
  api_keys_filename = "keys"
}

resource "google_cloud_run_v2_service" "this" {
  project     = var.project_id
  name        = var.name
  location    = var.region
  description = var.description != "" ? var.description : lookup({ "none" = "YOLO inference endpoint on CPU", "nvidia-l4" = "YOLO inference endpoint on an NVIDIA L4", "nvidia-rtx-pro-6000" = "YOLO inference endpoint on an NVIDIA RTX PRO 6000 Blackwell" }, var.revision.accelerator, "YOLO inference endpoint")
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

  # Every value below comes from var.revision, which revision_name hashes: a revision name is
  # never reused for a different configuration (Cloud Run answers 409 "Revision named ... with
  # different configuration already exists", hashicorp/terraform-provider-google#14569).
  template {
    revision                         = var.revision_name
    service_account                  = var.revision.service_account
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    max_instance_request_concurrency = var.revision.max_concurrency
    timeout                          = "${var.revision.timeout_seconds}s"
    # Best-effort: a client's next request (a WebSocket's reconnect) goes to the same instance while it has room.
    # Left out (null) of the endpoint's revisions, so their content and names stay as they were.
    session_affinity              = var.revision.session_affinity
    gpu_zonal_redundancy_disabled = var.revision.gpu_zonal_redundancy_disabled
    labels                        = var.revision.labels

    # GPU regions only: a CPU service has no accelerator selector and no GPU limit. (Written with
    # var.revision.accelerator itself, not a local, so checkov can resolve it too.)
    dynamic "node_selector" {
      for_each = var.revision.accelerator == "none" ? [] : [var.revision.accelerator]
      content {
        accelerator = var.revision.accelerator
      }
    }

    containers {
      name  = "yolo"
      image = var.revision.image

      # "h2c": Cloud Run forwards requests as cleartext HTTP/2 end to end, with no 32 MiB request cap;
      # "http1": it downgrades them to HTTP/1.1 (https://cloud.google.com/run/docs/configuring/http2).
      # The server answers both protocols on this port, so the probes below work with either name.
      ports {
        name           = var.revision.http2 ? "h2c" : "http1"
        container_port = local.port
      }

      resources {
        limits = merge(
          { cpu = var.revision.cpu, memory = var.revision.memory },
          var.revision.accelerator == "none" ? {} : { "nvidia.com/gpu" = "1" },
        )
        # false: instance-based billing (required with a GPU). true: request-based billing, CPU
        # is billed only while a request is handled (CPU regions, which scale to zero).
        cpu_idle          = var.revision.cpu_idle
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = var.revision.env
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

      # 503 until the weights are downloaded, loaded and warmed; Cloud Run sends no traffic before.
      startup_probe {
        initial_delay_seconds = var.revision.startup_probe.initial_delay_seconds
        period_seconds        = var.revision.startup_probe.period_seconds
        timeout_seconds       = var.revision.startup_probe.timeout_seconds
        failure_threshold     = var.revision.startup_probe.failure_threshold

        http_get {
          path = "/readyz"
          port = local.port
        }
      }

      liveness_probe {
        period_seconds    = var.revision.liveness_probe.period_seconds
        timeout_seconds   = var.revision.liveness_probe.timeout_seconds
        failure_threshold = var.revision.liveness_probe.failure_threshold

        http_get {
          path = "/healthz"
          port = local.port
        }
      }
    }

    # Managed Service for Prometheus' Cloud Run sidecar: with no configuration file it scrapes
    # 0.0.0.0:8080/metrics every 30 s and writes prometheus.googleapis.com/* metrics
    # (https://cloud.google.com/run/docs/monitoring-managed-prometheus-sidecar;
    # DefaultRunMonitoringConfig in GoogleCloudPlatform/run-gmp-sidecar confgenerator/config.go).
    dynamic "containers" {
      for_each = var.revision.prometheus_sidecar_image == "" ? [] : [var.revision.prometheus_sidecar_image]
      content {
        name       = "prometheus"
        image      = containers.value
        depends_on = ["yolo"]

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
          cpu_idle = var.revision.cpu_idle
        }
      }
    }

    volumes {
      name = "api-keys"
      secret {
        secret       = var.revision.api_keys_secret
        default_mode = 292 # 0444: the image runs as a non-root user
        items {
          version = var.revision.api_keys_secret_version
          path    = local.api_keys_filename
        }
      }
    }
  }

  dynamic "traffic" {
    for_each = var.traffic
    content {
      type     = traffic.value.type
      revision = traffic.value.revision
      percent  = traffic.value.percent
      tag      = traffic.value.tag
    }
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
