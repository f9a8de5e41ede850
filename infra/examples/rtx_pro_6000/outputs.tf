output "endpoint_urls" {
  description = "Per-region URLs."
  value       = module.yolo.endpoint_urls
}

output "regions" {
  description = "Each region's effective settings (accelerator, CPU, memory, scaling)."
  value       = module.yolo.regions
}

output "api_keys_secret" {
  description = "Secret holding the API keys."
  value       = module.yolo.api_keys_secret
}
