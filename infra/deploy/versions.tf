terraform {
  required_version = ">= 1.9"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.44, < 8.0"
    }
  }

  # Partial configuration: infra/scripts/*.sh pass bucket=PROJECT-NAME-tfstate and prefix=NAME
  # to `terraform init -backend-config=...`. The deployment's variables sit beside the state
  # (NAME/deploy.tfvars.json), so any machine can deploy, start or stop.
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
}
