# ---------------------------------------------------------------------------------------------
# Bulk inference (docs/batch.md): the identity of the Cloud Run Jobs of var.batch_jobs (module "batch_job" in
# main.tf). It reads the weights and the input buckets and creates objects only under the output prefixes (plus
# exported engines beside the weights, as the service does); it cannot delete or overwrite anything, which is also
# what makes each chunk's create-only write the exactly-once guarantee.
# ---------------------------------------------------------------------------------------------

resource "google_service_account" "batch" {
  count = length(var.batch_jobs) > 0 ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name}-batch"
  display_name = "YOLO endpoint ${var.name} (batch jobs)"
  description  = "Identity of the ${var.name} batch jobs: reads the weights and the input buckets, creates objects only under the output prefixes. Nothing else."

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "batch_reads_weights" {
  for_each = length(var.batch_jobs) > 0 && local.weights_in_bucket ? toset([local.release_buckets["candidate"]]) : toset([])

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = google_service_account.batch[0].member

  depends_on = [google_storage_bucket.weights]
}

resource "google_storage_bucket_iam_member" "batch_writes_engines" {
  for_each = length(var.batch_jobs) > 0 ? local.engine_upload_conditions : {}

  bucket = each.key
  role   = "roles/storage.objectCreator"
  member = google_service_account.batch[0].member

  condition {
    title       = "exported-engines-only"
    description = "Create objects only under the weights' .engines/ prefix (exported ONNX/OpenVINO/TensorRT engines)."
    expression  = each.value
  }

  depends_on = [google_storage_bucket.weights]
}

resource "google_storage_bucket_iam_member" "batch_reads_input" {
  for_each = local.batch_input_buckets

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = google_service_account.batch[0].member
}

# Reading the output bucket (the plan, the listing of done chunks) needs a bucket-wide list; writing is limited to
# the output prefixes by the condition.
resource "google_storage_bucket_iam_member" "batch_reads_output" {
  for_each = local.batch_output_conditions

  bucket = each.key
  role   = "roles/storage.objectViewer"
  member = google_service_account.batch[0].member
}

resource "google_storage_bucket_iam_member" "batch_writes_output" {
  for_each = local.batch_output_conditions

  bucket = each.key
  role   = "roles/storage.objectCreator"
  member = google_service_account.batch[0].member

  condition {
    title       = "batch-output-only"
    description = "Create objects only under the batch jobs' output prefixes."
    expression  = each.value
  }
}
