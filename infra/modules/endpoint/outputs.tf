output "name" {
  description = "Cloud Run service name."
  value       = google_cloud_run_v2_service.this.name
}

output "region" {
  description = "Region of the service."
  value       = google_cloud_run_v2_service.this.location
}

output "id" {
  description = "Service ID (projects/P/locations/R/services/S)."
  value       = google_cloud_run_v2_service.this.id
}

output "url" {
  description = "The service's run.app URL."
  value       = google_cloud_run_v2_service.this.uri
}

output "revision" {
  description = "Name of the revision the configuration describes (the newest release)."
  value       = var.revision_name
}

output "latest_ready_revision" {
  description = "Newest revision whose startup probe passed."
  value       = google_cloud_run_v2_service.this.latest_ready_revision
}

output "traffic" {
  description = "Where traffic goes now, as Cloud Run reports it: revision, percent, tag and the tag's own URL."
  value       = [for t in google_cloud_run_v2_service.this.traffic_statuses : { revision = t.revision, percent = t.percent, tag = t.tag, url = t.uri }]
}
