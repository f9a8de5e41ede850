# A Cloud Run Job that runs `python -m function batch` in the endpoint's image: each task takes its share of the
# chunks from CLOUD_RUN_TASK_INDEX/COUNT; a failed task is retried under the same index and does only the chunks its
# earlier attempts did not write (docs/batch.md). An execution may override the arguments and the task count
# (`gcloud run jobs execute --args ... --tasks N`, which `make batch` does).
resource "google_cloud_run_v2_job" "batch" {
  project             = var.project_id
  location            = var.region
  name                = var.name
  deletion_protection = var.deletion_protection
  labels              = var.labels
  # GPUs in jobs came as a preview: BETA lets the Admin API accept them whatever stage they are at now.
  launch_stage = var.accelerator == "none" ? null : "BETA"

  template {
    task_count  = var.task_count
    parallelism = var.parallelism
    labels      = var.labels

    template {
      service_account = var.service_account
      max_retries     = var.max_retries
      timeout         = "${var.task_timeout_seconds}s"
      # A GPU task has no zonal redundancy (Cloud Run Jobs require it off with a GPU).
      gpu_zonal_redundancy_disabled = var.accelerator == "none" ? null : true

      containers {
        image = var.image
        # The image's CMD (the server) is replaced by the entry point and its batch command; an execution's --args
        # replace only the arguments.
        command = ["python", "-m", "function"]
        args    = concat(["batch", "--input", var.input, "--output", var.output], var.batch_args)

        resources {
          limits = merge({ cpu = var.cpu, memory = var.memory }, var.accelerator == "none" ? {} : { "nvidia.com/gpu" = "1" })
        }

        dynamic "env" {
          for_each = merge({
            MODEL_CACHE_DIR = "/tmp/model-cache"
            YOLO_CONFIG_DIR = "/tmp/Ultralytics"
            YOLO_OFFLINE    = "true"
          }, var.env, { MODEL = var.model })
          content {
            name  = env.key
            value = env.value
          }
        }
      }

      dynamic "node_selector" {
        for_each = var.accelerator == "none" ? [] : [var.accelerator]
        content {
          accelerator = node_selector.value
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.accelerator == "none" || (tonumber(var.cpu) >= 4 && tonumber(regex("^([0-9]+)", var.memory)[0]) * (endswith(var.memory, "Gi") ? 1024 : 1) >= 16384)
      error_message = "A GPU job needs at least 4 CPU and 16Gi per task (cpu and memory)."
    }
  }
}
