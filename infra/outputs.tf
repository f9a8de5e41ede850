output "endpoint_urls" {
  description = "URL of each running region's service, by region."
  value       = { for region, endpoint in module.endpoint : region => endpoint.url }
}

output "stream_urls" {
  description = "URL of each running region's stream service (regions[*].streams = true), by region: connect a WebSocket to wss://HOST/stream (the https:// URL with wss://)."
  value       = { for region, streams in module.streams : region => streams.url }
}

output "service_names" {
  description = "Cloud Run service name of each running region, by region."
  value       = { for region, endpoint in module.endpoint : region => endpoint.name }
}

output "running_regions" {
  description = "Regions with a Cloud Run service now."
  value       = local.running_regions
}

output "stopped_regions" {
  description = "Regions stopped by stop.sh (no service, no instance, no GPU billed)."
  value       = var.stopped_regions
}

output "load_balancer_ip" {
  description = "Anycast IPv4 address of the global load balancer (point lb_domains' A records here), or null without one."
  value       = local.load_balancer ? google_compute_global_address.lb[0].address : null
}

output "load_balancer_url" {
  description = "HTTPS URL that routes each client to the nearest running region, or null without a load balancer."
  value       = local.load_balancer ? "https://${var.lb_domains[0]}" : null
}

output "service_account_email" {
  description = "Runtime service account of the services."
  value       = google_service_account.runtime.email
}

output "build_service_account" {
  description = "Service account Cloud Build runs as (projects/P/serviceAccounts/EMAIL, the form gcloud builds submit --service-account takes)."
  value       = google_service_account.build.id
}

output "images" {
  description = "Images the services run, by flavour: cpu, nvidia-l4, nvidia-rtx-pro-6000."
  value       = var.images
}

output "regions" {
  description = "Each region's effective settings: kind (the image flavour: cpu, nvidia-l4 or nvidia-rtx-pro-6000), label (CPU, NVIDIA L4, NVIDIA RTX PRO 6000), accelerator, cpu, memory, min/max instances, concurrency, batch size, engine."
  value       = local.settings
}

output "http2" {
  description = "true when the services' container port is h2c (HTTP/2 end to end, no 32 MiB request cap); false for http1."
  value       = var.http2
}

output "revisions" {
  description = "Name of the revision each running region's configuration describes (the newest release)."
  value       = { for region, names in local.revision_names : region => names.candidate }
}

output "traffic" {
  description = "Where each running region's traffic goes, as configured: type, revision, percent, tag."
  value       = local.traffic
}

output "canary_urls" {
  description = "During a canary, each running region's URL that reaches only the new release (Cloud Run revision tag \"canary\"); empty otherwise."
  value = var.canary == null ? {} : {
    for region, endpoint in module.endpoint : region => one([for t in endpoint.traffic : t.url if t.tag == "canary"])
  }
}

output "dashboard_url" {
  description = "The Cloud Monitoring dashboard, or null without one."
  value       = var.monitoring.dashboard ? "https://console.cloud.google.com/monitoring/dashboards/builder/${element(split("/", google_monitoring_dashboard.endpoint[0].id), 3)}?project=${var.project_id}" : null
}

output "image_repository" {
  description = "Artifact Registry path to push images to (LOCATION-docker.pkg.dev/PROJECT/REPOSITORY)."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "build_source_bucket" {
  description = "Bucket Cloud Build stages its sources in."
  value       = google_storage_bucket.build_source.name
}

output "weights_bucket" {
  description = "Bucket that holds the weights."
  value       = local.weights_bucket
}

output "model" {
  description = "What the services' MODEL points at."
  value       = local.model
}

output "api_keys_secret" {
  description = "Secret Manager secret ID holding the API keys (one per line). Read a key with: gcloud secrets versions access latest --secret=ID --project=PROJECT. The key itself is never a Terraform value."
  value       = google_secret_manager_secret.api_keys.secret_id
}

output "batch_jobs" {
  description = "The batch job of each region that has one: {region = job name}; run it with make batch (docs/batch.md)."
  value       = { for region, job in module.batch_job : region => job.name }
}

output "batch_service_account" {
  description = "Email of the batch jobs' identity (empty without batch_jobs): grant it objectViewer on input buckets the module does not know of."
  value       = length(google_service_account.batch) > 0 ? google_service_account.batch[0].email : ""
}
