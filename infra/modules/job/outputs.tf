output "name" {
  description = "The job's name: gcloud run jobs execute NAME --region REGION."
  value       = google_cloud_run_v2_job.batch.name
}

output "id" {
  description = "The job's resource id."
  value       = google_cloud_run_v2_job.batch.id
}

output "region" {
  description = "The job's region."
  value       = google_cloud_run_v2_job.batch.location
}
