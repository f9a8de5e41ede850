# The dashboard's content, from the variables alone (no resource), so tests can render it with
# real Terraform and check every chart's metric type; monitoring.tf creates it.
locals {
  run_filter  = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name}\""
  prom_filter = "resource.type=\"prometheus_target\" AND resource.labels.namespace=\"${var.name}\""

  by_region = ["resource.label.location"]

  # One chart dataset: a metric, how each series is aligned, and how series are combined.
  dashboard_charts = concat(
    [
      {
        title = "Requests per second"
        datasets = [
          { legend = "$${resource.labels.location}", filter = "metric.type=\"run.googleapis.com/request_count\" AND ${local.run_filter}", aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = local.by_region },
          { legend = "all regions", filter = "metric.type=\"run.googleapis.com/request_count\" AND ${local.run_filter}", aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = [] },
        ]
      },
      {
        title = "Error ratio (5xx / all requests)"
        ratios = [
          { legend = "$${resource.labels.location}", group_by = local.by_region },
          { legend = "all regions", group_by = [] },
        ]
        threshold = var.monitoring.error_ratio_threshold
      },
      {
        title = "Latency, all regions (ms)"
        datasets = [for p in [50, 95, 99] : {
          legend = "P${p}", filter = "metric.type=\"run.googleapis.com/request_latencies\" AND ${local.run_filter}", aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_${p}", group_by = []
        }]
        threshold = var.monitoring.p95_latency_threshold_ms
      },
      {
        title = "P95 latency by region (ms)"
        datasets = [
          { legend = "$${resource.labels.location}", filter = "metric.type=\"run.googleapis.com/request_latencies\" AND ${local.run_filter}", aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group_by = local.by_region },
        ]
      },
      {
        title = "Instances"
        datasets = [
          { legend = "$${resource.labels.location} $${metric.labels.state}", filter = "metric.type=\"run.googleapis.com/container/instance_count\" AND ${local.run_filter}", aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", group_by = ["resource.label.location", "metric.label.state"] },
        ]
      },
      {
        title = "CPU utilisation, P95 of instances"
        datasets = [
          { legend = "$${resource.labels.location}", filter = "metric.type=\"run.googleapis.com/container/cpu/utilizations\" AND ${local.run_filter}", aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group_by = local.by_region },
        ]
      },
      {
        title = "Memory utilisation, P95 of instances"
        datasets = [
          { legend = "$${resource.labels.location}", filter = "metric.type=\"run.googleapis.com/container/memory/utilizations\" AND ${local.run_filter}", aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group_by = local.by_region },
        ]
      },
    ],
    length(local.gpu_regions_used) == 0 ? [] : [
      {
        title = "GPU utilisation, P95 of instances"
        datasets = [
          { legend = "$${resource.labels.location}", filter = "metric.type=\"run.googleapis.com/container/gpu/utilizations\" AND ${local.run_filter}", aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group_by = local.by_region },
        ]
      },
    ],
    # The service's own /metrics (server side: function/), through the Prometheus sidecar.
    !var.monitoring.prometheus_sidecar ? [] : [
      {
        title = "Queue wait before inference, P95 (s)"
        datasets = [
          { legend = "$${resource.labels.location}", filter = "metric.type=\"prometheus.googleapis.com/yolo_queue_wait_seconds/histogram\" AND ${local.prom_filter}", aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group_by = local.by_region },
        ]
      },
      {
        title = "Inference time (s)"
        datasets = [for p in [50, 95] : {
          legend = "P${p} $${resource.labels.location}", filter = "metric.type=\"prometheus.googleapis.com/yolo_inference_seconds/histogram\" AND ${local.prom_filter}", aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_${p}", group_by = local.by_region
        }]
      },
      {
        title = "Batch size (mean)"
        datasets = [
          { legend = "$${resource.labels.location}", filter = "metric.type=\"prometheus.googleapis.com/yolo_batch_size/histogram\" AND ${local.prom_filter}", aligner = "ALIGN_DELTA", reducer = "REDUCE_MEAN", group_by = local.by_region },
        ]
      },
      {
        title = "Queue depth and requests in flight"
        datasets = [
          { legend = "queued $${resource.labels.location}", filter = "metric.type=\"prometheus.googleapis.com/yolo_queue_depth/gauge\" AND ${local.prom_filter}", aligner = "ALIGN_MEAN", reducer = "REDUCE_SUM", group_by = local.by_region },
          { legend = "in flight $${resource.labels.location}", filter = "metric.type=\"prometheus.googleapis.com/yolo_inflight_requests/gauge\" AND ${local.prom_filter}", aligner = "ALIGN_MEAN", reducer = "REDUCE_SUM", group_by = local.by_region },
        ]
      },
    ],
    # Several models (var.models): each model's traffic, and how often the LRU loads and evicts (a switch costs a load).
    !var.monitoring.prometheus_sidecar || length(var.models) == 0 ? [] : [
      {
        title = "Images per second by model"
        datasets = [
          { legend = "$${metric.labels.model}", filter = "metric.type=\"prometheus.googleapis.com/yolo_images_total/counter\" AND ${local.prom_filter}", aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = ["metric.label.model"] },
        ]
      },
      {
        title = "Model loads and evictions (per minute)"
        datasets = [
          { legend = "loads $${metric.labels.model}", filter = "metric.type=\"prometheus.googleapis.com/yolo_model_loads_total/counter\" AND ${local.prom_filter}", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["metric.label.model"] },
          { legend = "evictions $${metric.labels.model}", filter = "metric.type=\"prometheus.googleapis.com/yolo_model_evictions_total/counter\" AND ${local.prom_filter}", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["metric.label.model"] },
        ]
      },
    ],
  )

  dashboard = {
    displayName = "YOLO endpoint ${var.name}"
    mosaicLayout = {
      columns = 48
      tiles = [for i, chart in local.dashboard_charts : {
        xPos   = (i % 2) * 24
        yPos   = floor(i / 2) * 16
        width  = 24
        height = 16
        widget = {
          title = chart.title
          xyChart = merge(
            {
              dataSets = concat(
                [for d in try(chart.datasets, []) : {
                  plotType       = "LINE"
                  legendTemplate = d.legend
                  timeSeriesQuery = {
                    timeSeriesFilter = {
                      filter      = d.filter
                      aggregation = { alignmentPeriod = "60s", perSeriesAligner = d.aligner, crossSeriesReducer = d.reducer, groupByFields = d.group_by }
                    }
                  }
                }],
                [for d in try(chart.ratios, []) : {
                  plotType       = "LINE"
                  legendTemplate = d.legend
                  timeSeriesQuery = {
                    timeSeriesFilterRatio = {
                      numerator = {
                        filter      = "metric.type=\"run.googleapis.com/request_count\" AND ${local.run_filter} AND metric.labels.response_code_class=\"5xx\""
                        aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_RATE", crossSeriesReducer = "REDUCE_SUM", groupByFields = d.group_by }
                      }
                      denominator = {
                        filter      = "metric.type=\"run.googleapis.com/request_count\" AND ${local.run_filter}"
                        aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_RATE", crossSeriesReducer = "REDUCE_SUM", groupByFields = d.group_by }
                      }
                    }
                  }
                }],
              )
            },
            can(chart.threshold) ? { thresholds = [{ value = chart.threshold, color = "RED", direction = "ABOVE" }] } : {},
          )
        }
      }]
    }
  }
}
