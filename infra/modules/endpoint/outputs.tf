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

output "latest_ready_revision" {
  description = "Revision now serving traffic."
  value       = google_cloud_run_v2_service.this.latest_ready_revision
}
