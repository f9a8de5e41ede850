# The root configuration `make deploy` applies: the module in infra/ with the variables the
# scripts keep in deploy.tfvars.json. See infra/examples/ for hand-written callers.
module "yolo" {
  source = "../"

  project_id                    = var.project_id
  name                          = var.name
  regions                       = var.regions
  gpu_defaults                  = var.gpu_defaults
  rtx_pro_6000_defaults         = var.rtx_pro_6000_defaults
  cpu_defaults                  = var.cpu_defaults
  stream_defaults               = var.stream_defaults
  engine                        = var.engine
  stopped_regions               = var.stopped_regions
  images                        = var.images
  weights_bucket                = var.weights_bucket
  model_object                  = var.model_object
  model_path_in_image           = var.model_path_in_image
  model_id                      = var.model_id
  models                        = var.models
  gpu_zonal_redundancy_disabled = var.gpu_zonal_redundancy_disabled
  http2                         = var.http2
  artifact_registry_location    = var.artifact_registry_location
  lb_domains                    = var.lb_domains
  canary                        = var.canary
  monitoring                    = var.monitoring
  notification_channels         = var.notification_channels
  batch_jobs                    = var.batch_jobs
}
