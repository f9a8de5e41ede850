output "endpoint_urls" {
  description = "Per-region URLs."
  value       = module.yolo.endpoint_urls
}

output "stream_urls" {
  description = "Per-region URLs of the stream services: wss://HOST/stream (or wss://DOMAIN/stream through the load balancer)."
  value       = module.yolo.stream_urls
}

output "load_balancer_url" {
  description = "One URL for all regions."
  value       = module.yolo.load_balancer_url
}

output "load_balancer_ip" {
  description = "Point the domain's A record here."
  value       = module.yolo.load_balancer_ip
}

output "api_keys_secret" {
  description = "Secret holding the API keys."
  value       = module.yolo.api_keys_secret
}

output "dashboard_url" {
  description = "The Cloud Monitoring dashboard."
  value       = module.yolo.dashboard_url
}
