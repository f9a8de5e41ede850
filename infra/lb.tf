# Optional global external Application Load Balancer (EXTERNAL_MANAGED): one anycast IP and one
# HTTPS URL in front of every running region. Each region's service is a serverless NEG backend
# of one backend service, so Google's edge sends each client to the nearest running region.
# Stopped regions have no NEG, so their share of traffic goes to the regions still running.

resource "google_compute_global_address" "lb" {
  count = local.load_balancer ? 1 : 0

  project    = var.project_id
  name       = "${var.name}-lb"
  ip_version = "IPV4"
  labels     = local.labels

  depends_on = [google_project_service.apis]
}

# The backends: the endpoints, and with streams the stream services (wss://DOMAIN/stream and /api/models/{id}/stream,
# routed by the URL map below; the nearest region with streams again). One serverless NEG per running service, keyed
# by region for an endpoint and REGION/streams for a stream service, and one backend service per kind of service, each
# with its own NEGs. The external Application Load Balancer carries WebSockets with no setting of its own.
locals {
  lb_negs = local.load_balancer ? merge(
    { for region, endpoint in module.endpoint : region => endpoint.name },
    { for region, streams in module.streams : "${region}/streams" => streams.name },
  ) : {}
  lb_backends = local.load_balancer ? merge({ endpoint = "${var.name}-backend" }, length(local.stream_regions) > 0 ? { streams = "${var.name}-streams-backend" } : {}) : {}
}

resource "google_compute_region_network_endpoint_group" "lb" {
  for_each = local.lb_negs

  project               = var.project_id
  name                  = "${var.name}-${replace(each.key, "/", "-")}"
  region                = split("/", each.key)[0]
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = each.value
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_backend_service" "lb" {
  for_each = local.lb_backends

  project               = var.project_id
  name                  = each.value
  load_balancing_scheme = "EXTERNAL_MANAGED"
  # As terraform-google-lb-http's serverless_negs module does: the proxy reaches Cloud Run inside
  # Google's network. Serverless NEG backends take no health check and no timeout_sec: Cloud Run's
  # own request timeout and startup probe apply (3600 s for a stream service's sockets).
  protocol = "HTTP"

  dynamic "backend" {
    for_each = { for key, neg in google_compute_region_network_endpoint_group.lb : key => neg if endswith(key, "/streams") == (each.key == "streams") }
    content {
      group = backend.value.id
    }
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

# Addresses of the version before streams.
moved {
  from = google_compute_region_network_endpoint_group.endpoint
  to   = google_compute_region_network_endpoint_group.lb
}

moved {
  from = google_compute_backend_service.lb[0]
  to   = google_compute_backend_service.lb["endpoint"]
}

resource "google_compute_managed_ssl_certificate" "lb" {
  count = local.load_balancer ? 1 : 0

  project = var.project_id
  # A new domain list needs a new certificate; the hash in the name lets it be created first.
  name = "${var.name}-cert-${substr(sha256(join(",", var.lb_domains)), 0, 8)}"

  managed {
    domains = var.lb_domains
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_url_map" "lb" {
  count = local.load_balancer ? 1 : 0

  project         = var.project_id
  name            = "${var.name}-lb"
  default_service = google_compute_backend_service.lb["endpoint"].id

  # With stream services: the two stream paths (the query string, e.g. ?api_key=, is not part of the match) to them.
  dynamic "host_rule" {
    for_each = { for kind, backend in google_compute_backend_service.lb : kind => backend if kind == "streams" }
    content {
      hosts        = ["*"]
      path_matcher = "streams"
    }
  }

  dynamic "path_matcher" {
    for_each = { for kind, backend in google_compute_backend_service.lb : kind => backend if kind == "streams" }
    content {
      name            = "streams"
      default_service = google_compute_backend_service.lb["endpoint"].id

      route_rules {
        priority = 1
        service  = path_matcher.value.id
        match_rules {
          full_path_match = "/stream"
        }
        match_rules {
          path_template_match = "/api/models/{id=*}/stream"
        }
      }
    }
  }
}

resource "google_compute_target_https_proxy" "lb" {
  count = local.load_balancer ? 1 : 0

  project          = var.project_id
  name             = "${var.name}-https"
  url_map          = google_compute_url_map.lb[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.lb[0].id]
}

resource "google_compute_global_forwarding_rule" "https" {
  count = local.load_balancer ? 1 : 0

  project               = var.project_id
  name                  = "${var.name}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "443"
  ip_address            = google_compute_global_address.lb[0].address
  target                = google_compute_target_https_proxy.lb[0].id
  labels                = local.labels
}

# Plain HTTP on the same IP only redirects to HTTPS.
resource "google_compute_url_map" "http_redirect" {
  count = local.load_balancer ? 1 : 0

  project = var.project_id
  name    = "${var.name}-http-redirect"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "http_redirect" {
  count = local.load_balancer ? 1 : 0

  project = var.project_id
  name    = "${var.name}-http"
  url_map = google_compute_url_map.http_redirect[0].id
}

resource "google_compute_global_forwarding_rule" "http" {
  count = local.load_balancer ? 1 : 0

  project               = var.project_id
  name                  = "${var.name}-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "80"
  ip_address            = google_compute_global_address.lb[0].address
  target                = google_compute_target_http_proxy.http_redirect[0].id
  labels                = local.labels
}
