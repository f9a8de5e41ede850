output "endpoint_urls" {
  description = "URL of each running region's service."
  value       = module.yolo.endpoint_urls
}

output "stream_urls" {
  description = "URL of each running region's stream service (wss://HOST/stream)."
  value       = module.yolo.stream_urls
}

output "running_regions" {
  description = "Regions with a running service."
  value       = module.yolo.running_regions
}

output "stopped_regions" {
  description = "Regions stopped by stop.sh."
  value       = module.yolo.stopped_regions
}

output "load_balancer_url" {
  description = "HTTPS URL of the global load balancer, or null."
  value       = module.yolo.load_balancer_url
}

output "load_balancer_ip" {
  description = "IP address of the global load balancer, or null."
  value       = module.yolo.load_balancer_ip
}

output "service_account_email" {
  description = "Runtime service account."
  value       = module.yolo.service_account_email
}

output "build_service_account" {
  description = "Cloud Build service account (projects/P/serviceAccounts/EMAIL)."
  value       = module.yolo.build_service_account
}

output "images" {
  description = "Images the services run, by flavour (cpu, nvidia-l4, nvidia-rtx-pro-6000)."
  value       = module.yolo.images
}

output "http2" {
  description = "true when the container port is h2c (HTTP/2 end to end)."
  value       = module.yolo.http2
}

output "regions" {
  description = "Each region's effective settings."
  value       = module.yolo.regions
}

output "revisions" {
  description = "Revision each running region's configuration describes."
  value       = module.yolo.revisions
}

output "traffic" {
  description = "Where each running region's traffic goes."
  value       = module.yolo.traffic
}

output "canary_urls" {
  description = "During a canary, each region's URL that reaches only the new release."
  value       = module.yolo.canary_urls
}

output "dashboard_url" {
  description = "The Cloud Monitoring dashboard."
  value       = module.yolo.dashboard_url
}

output "image_repository" {
  description = "Artifact Registry path images are pushed to."
  value       = module.yolo.image_repository
}

output "weights_bucket" {
  description = "Bucket holding the weights."
  value       = module.yolo.weights_bucket
}

output "model" {
  description = "What MODEL points at."
  value       = module.yolo.model
}

output "api_keys_secret" {
  description = "Secret Manager secret ID of the API keys (the key itself is never an output)."
  value       = module.yolo.api_keys_secret
}

output "batch_jobs" {
  description = "The batch job of each region that has one (make batch runs it)."
  value       = module.yolo.batch_jobs
}
