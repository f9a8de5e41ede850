terraform {
  # Variable validations that refer to other variables (regions vs gpu_regions,
  # max_instances vs min_instances) need Terraform 1.9.
  required_version = ">= 1.9"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Fields this module relies on, and the google provider release that added them:
      #   invoker_iam_disabled                      6.8
      #   template.gpu_zonal_redundancy_disabled    6.28 (node_selector GA in the same release)
      #   service-level scaling.max_instance_count  7.0
      #   service-level scaling permadiff fixes     7.13, 7.15
      #   template.scaling.max_instance_count made computed (no permadiff when only the
      #   service-level maximum is set, as here)     7.44
      version = ">= 7.44, < 8.0"
    }
  }
}
