# The root configuration `make deploy` applies: the module in infra/ with the variables the
# scripts keep in deploy.tfvars.json. See infra/examples/two_regions for a hand-written caller.
module "yolo" {
  source = "../"

  project_id                    = var.project_id
  name                          = var.name
  regions                       = var.regions
  stopped_regions               = var.stopped_regions
  image                         = var.image
  weights_bucket                = var.weights_bucket
  model_object                  = var.model_object
  model_path_in_image           = var.model_path_in_image
  model_id                      = var.model_id
  min_instances                 = var.min_instances
  max_instances                 = var.max_instances
  max_concurrency               = var.max_concurrency
  gpu_zonal_redundancy_disabled = var.gpu_zonal_redundancy_disabled
  lb_domains                    = var.lb_domains
}
