# What an operator watches, in Cloud Monitoring: one dashboard, an uptime check per running region
# and three alert policies, each optional (var.monitoring). Metric types are Cloud Run's built-in
# ones (https://cloud.google.com/monitoring/api/metrics_gcp_p_z#gcp-run) and the service's own
# /metrics, which the Prometheus sidecar writes as prometheus.googleapis.com/NAME/KIND on the
# prometheus_target resource, namespace = the service name
# (https://cloud.google.com/stackdriver/docs/managed-prometheus/cloudrun-sidecar).

resource "google_monitoring_dashboard" "endpoint" {
  count = var.monitoring.dashboard ? 1 : 0

  project        = var.project_id
  dashboard_json = jsonencode(local.dashboard)

  depends_on = [google_project_service.apis]
}

# GET uptime_check_path on each running region's public URL from Cloud Monitoring's checkers. On
# /readyz the body must also say "ready" (the service answers {"status": "ready", ...}).
resource "google_monitoring_uptime_check_config" "readiness" {
  for_each = var.monitoring.uptime_checks ? module.endpoint : {}

  project      = var.project_id
  display_name = "${var.name} ${each.key} ${var.monitoring.uptime_check_path}"
  timeout      = "10s"
  period       = var.monitoring.uptime_check_period

  http_check {
    path         = var.monitoring.uptime_check_path
    port         = 443
    use_ssl      = true
    validate_ssl = true

    accepted_response_status_codes {
      status_class = "STATUS_CLASS_2XX"
    }
  }

  dynamic "content_matchers" {
    for_each = var.monitoring.uptime_check_path == "/readyz" ? ["ready"] : []
    content {
      content = content_matchers.value
      matcher = "MATCHES_JSON_PATH"
      json_path_matcher {
        json_path    = "$.status"
        json_matcher = "EXACT_MATCH"
      }
    }
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = trimsuffix(trimprefix(each.value.url, "https://"), "/")
    }
  }
}

# The Ultralytics Platform's red line: more than 5 % (var.monitoring.error_ratio_threshold) of a
# region's requests answered 5xx for alert_duration.
resource "google_monitoring_alert_policy" "error_ratio" {
  count = var.monitoring.alerts && length(local.running_regions) > 0 ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name}: 5xx above ${var.monitoring.error_ratio_threshold * 100}% of requests"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "5xx / all requests, per region"
    condition_threshold {
      filter             = "metric.type=\"run.googleapis.com/request_count\" AND ${local.run_filter} AND metric.labels.response_code_class=\"5xx\""
      denominator_filter = "metric.type=\"run.googleapis.com/request_count\" AND ${local.run_filter}"
      comparison         = "COMPARISON_GT"
      threshold_value    = var.monitoring.error_ratio_threshold
      duration           = var.monitoring.alert_duration

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = local.by_region
      }
      denominator_aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = local.by_region
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Cloud Run service `${var.name}` answers 5xx to more than ${var.monitoring.error_ratio_threshold * 100}% of requests in a region. Check its logs: `gcloud run services logs read ${var.name} --region=REGION --project=${var.project_id}`; during a canary, `make rollback`."
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "latency_p95" {
  count = var.monitoring.alerts && length(local.running_regions) > 0 ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name}: P95 latency above ${var.monitoring.p95_latency_threshold_ms} ms"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "P95 request latency, per region"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_latencies\" AND ${local.run_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.monitoring.p95_latency_threshold_ms
      duration        = var.monitoring.alert_duration

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = local.by_region
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "P95 latency of `${var.name}` is above ${var.monitoring.p95_latency_threshold_ms} ms in a region: more instances (max_instances), a GPU region, or a smaller model."
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "uptime" {
  count = var.monitoring.alerts && var.monitoring.uptime_checks && length(local.running_regions) > 0 ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name}: uptime check failing"
  combiner              = "OR"
  notification_channels = var.notification_channels

  dynamic "conditions" {
    for_each = google_monitoring_uptime_check_config.readiness
    content {
      display_name = "${conditions.key}: ${var.monitoring.uptime_check_path} fails"
      condition_threshold {
        filter          = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND resource.type=\"uptime_url\" AND metric.labels.check_id=\"${conditions.value.uptime_check_id}\""
        comparison      = "COMPARISON_GT"
        threshold_value = 1
        duration        = var.monitoring.alert_duration

        aggregations {
          alignment_period     = "1200s"
          per_series_aligner   = "ALIGN_NEXT_OLDER"
          cross_series_reducer = "REDUCE_COUNT_FALSE"
          group_by_fields      = ["resource.label.host"]
        }
        trigger {
          count = 1
        }
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "An uptime check of `${var.name}` fails from more than one checker location: the region's URL does not answer ${var.monitoring.uptime_check_path} with 200. `make status` shows every region."
  }
}
