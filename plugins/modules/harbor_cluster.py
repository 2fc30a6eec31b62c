#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: harborfleet.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: harbor_cluster
short_description: A Harbor tenant's HarborCluster custom resource, its namespace and its Secrets
version_added: 0.1.0
description:
  - Converges, for one tenant or a list of tenants, the Harbor Operator's C(goharbor.io/v1beta1) C(HarborCluster)
    wired to an external PostgreSQL, a Redis Sentinel and an S3 bucket, plus the tenant's namespace (labelled with
    the tenant id) and the Secrets the cluster references.
  - Names come from the tenant id - namespace C(harbor-<id>), cluster C(<id>), Secrets C(<id>-database),
    C(<id>-cache), C(<id>-admin), C(<id>-storage) and C(<id>-trust) (CA certificates), database prefix C(<id>_)
    and login C(harbor_<id>) (C(-) as C(_)), master set C(harbor-<id>), bucket C(<bucket_prefix><id>) - unless an option overrides them.
  - Secrets carry the operator's data keys - the database password under both C(postgres-password) and
    C(postgresql-password), C(redis-password), and C(secret) for the admin password and the S3 secret key.
    Their values never appear in results or diffs, only whether each key is unchanged, changed or created.
  - Objects are written with server-side apply (field manager C(harborfleet)), and only when the live object
    differs from what would be applied; C(managedFields), C(resourceVersion) and server defaults do not count
    as differences. A field this module applied earlier and no longer sets is removed.
  - Fields the installed CRD does not have are refused, except the per-plan
    O(core_max_idle_connections)/O(core_max_open_connections), which are left out with a warning (they exist on
    the operator's main branch, not in v1.4.0-rc1).
  - Check mode asks the API server for a server-side dry run of every cluster that would change, so invalid specs
    and field-manager conflicts are reported without writing anything.
  - All tenants are read with one LIST per kind; only tenants that differ are written.
author:
  - harborfleet maintainers (@harborfleet)
extends_documentation_fragment:
  - harborfleet.fleet.kubernetes
  - harborfleet.fleet.batch
  - harborfleet.fleet.attributes
options:
  tenant:
    description:
      - The tenant id (single form). Lowercase letters, digits and single hyphens, starting with a letter, at most
        40 characters.
      - Mutually exclusive with O(tenants).
    type: str
  tenants:
    description:
      - The list form. Each item is one tenant and takes the per-tenant options below; an option an item leaves
        out takes its top-level value. Dictionary options merge key by key with the top-level value
        (O(spec_overrides) merges recursively).
    type: list
    elements: dict
    suboptions:
      tenant:
        description: The tenant id.
        type: str
        required: true
      version:
        description: See the top-level O(version).
        type: str
      external_url:
        description: See the top-level O(external_url).
        type: str
      harbor_class:
        description: See the top-level O(harbor_class).
        type: str
      log_level:
        description: See the top-level O(log_level).
        type: str
        choices: [debug, info, warning, error, fatal]
      labels:
        description: See the top-level O(labels).
        type: dict
      bucket_prefix:
        description: See the top-level O(bucket_prefix).
        type: str
      admin_password:
        description: See the top-level O(admin_password).
        type: str
      database:
        description: See the top-level O(database).
        type: dict
        suboptions:
          host:
            description: See the top-level O(database.host).
            type: str
          port:
            description: See the top-level O(database.port).
            type: int
          ssl_mode:
            description: See the top-level O(database.ssl_mode).
            type: str
            choices: [disable, allow, prefer, require, verify-ca, verify-full]
          ca_cert:
            description: See the top-level O(database.ca_cert).
            type: path
          username:
            description: See the top-level O(database.username).
            type: str
          prefix:
            description: See the top-level O(database.prefix).
            type: str
          password:
            description: See the top-level O(database.password).
            type: str
      cache:
        description: See the top-level O(cache).
        type: dict
        suboptions:
          host:
            description: See the top-level O(cache.host).
            type: str
          port:
            description: See the top-level O(cache.port).
            type: int
          master_set:
            description: See the top-level O(cache.master_set).
            type: str
          password:
            description: See the top-level O(cache.password).
            type: str
      storage:
        description: See the top-level O(storage).
        type: dict
        suboptions:
          region:
            description: See the top-level O(storage.region).
            type: str
          bucket:
            description: See the top-level O(storage.bucket).
            type: str
          endpoint:
            description: See the top-level O(storage.endpoint).
            type: str
          access_key:
            description: See the top-level O(storage.access_key).
            type: str
          secret_key:
            description: See the top-level O(storage.secret_key).
            type: str
          secure:
            description: See the top-level O(storage.secure).
            type: bool
          v4auth:
            description: See the top-level O(storage.v4auth).
            type: bool
          encrypt:
            description: See the top-level O(storage.encrypt).
            type: bool
          key_id:
            description: See the top-level O(storage.key_id).
            type: str
          root_directory:
            description: See the top-level O(storage.root_directory).
            type: str
          skip_verify:
            description: See the top-level O(storage.skip_verify).
            type: bool
          storage_class:
            description: See the top-level O(storage.storage_class).
            type: str
          chunk_size:
            description: See the top-level O(storage.chunk_size).
            type: int
          certificate_secret:
            description: See the top-level O(storage.certificate_secret).
            type: str
          ca_cert:
            description: See the top-level O(storage.ca_cert).
            type: path
          redirect:
            description: See the top-level O(storage.redirect).
            type: bool
      expose:
        description: See the top-level O(expose).
        type: dict
        suboptions:
          host:
            description: See the top-level O(expose.host).
            type: str
          ingress_class_name:
            description: See the top-level O(expose.ingress_class_name).
            type: str
          controller:
            description: See the top-level O(expose.controller).
            type: str
            choices: [default, gce, ncp, contour]
          annotations:
            description: See the top-level O(expose.annotations).
            type: dict
          tls_secret:
            description: See the top-level O(expose.tls_secret).
            type: str
      token_issuer:
        description: See the top-level O(token_issuer).
        type: dict
        suboptions:
          name:
            description: See the top-level O(token_issuer.name).
            type: str
          kind:
            description: See the top-level O(token_issuer.kind).
            type: str
            choices: [Issuer, ClusterIssuer]
          group:
            description: See the top-level O(token_issuer.group).
            type: str
      trivy:
        description: See the top-level O(trivy).
        type: dict
        suboptions:
          enabled:
            description: See the top-level O(trivy.enabled).
            type: bool
          reports_claim:
            description: See the top-level O(trivy.reports_claim).
            type: str
          cache_claim:
            description: See the top-level O(trivy.cache_claim).
            type: str
          skip_update:
            description: See the top-level O(trivy.skip_update).
            type: bool
          offline_scan:
            description: See the top-level O(trivy.offline_scan).
            type: bool
          github_token_secret:
            description: See the top-level O(trivy.github_token_secret).
            type: str
          replicas:
            description: See the top-level O(trivy.replicas).
            type: int
      notary:
        description: See the top-level O(notary).
        type: dict
        suboptions:
          enabled:
            description: See the top-level O(notary.enabled).
            type: bool
          host:
            description: See the top-level O(notary.host).
            type: str
          tls_secret:
            description: See the top-level O(notary.tls_secret).
            type: str
          migration_enabled:
            description: See the top-level O(notary.migration_enabled).
            type: bool
          server_replicas:
            description: See the top-level O(notary.server_replicas).
            type: int
          signer_replicas:
            description: See the top-level O(notary.signer_replicas).
            type: int
      chartmuseum:
        description: See the top-level O(chartmuseum).
        type: dict
        suboptions:
          enabled:
            description: See the top-level O(chartmuseum.enabled).
            type: bool
          absolute_url:
            description: See the top-level O(chartmuseum.absolute_url).
            type: bool
          replicas:
            description: See the top-level O(chartmuseum.replicas).
            type: int
      image_source:
        description: See the top-level O(image_source).
        type: dict
        suboptions:
          repository:
            description: See the top-level O(image_source.repository).
            type: str
          tag_suffix:
            description: See the top-level O(image_source.tag_suffix).
            type: str
      replicas:
        description: See the top-level O(replicas).
        type: dict
      core_max_idle_connections:
        description: See the top-level O(core_max_idle_connections).
        type: int
      core_max_open_connections:
        description: See the top-level O(core_max_open_connections).
        type: int
      spec_overrides:
        description: See the top-level O(spec_overrides).
        type: dict
  state:
    description:
      - V(present) converges the namespace, the Secrets and the HarborCluster.
      - V(absent) deletes the HarborCluster and waits until it is gone (its finalizers included), at most
        O(wait_timeout) seconds. The namespace, and the Secrets in it, stay unless O(delete_namespace=true).
    type: str
    choices: [present, absent]
    default: present
  wait:
    description:
      - With O(state=present), wait until each tenant's cluster is ready by the operator's rule -
        C(status.observedGeneration) equals C(metadata.generation), C(InProgress) and C(Failed) are not C(True),
        C(ServiceReady) is C(True) and C(status.status) is C(healthy).
      - On timeout the tenant fails, showing the status and every condition's status, reason and message.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait per tenant for readiness (O(wait)) or, with O(state=absent), for removal.
    type: int
    default: 600
  force_conflicts:
    description:
      - Take over fields another field manager owns instead of failing. Without it such a conflict is an error
        naming the fields and the other manager.
    type: bool
    default: false
  delete_namespace:
    description:
      - With O(state=absent), also delete the tenant's namespace and everything in it, once the HarborCluster is
        gone. Only a namespace labelled with the tenant id is deleted. The module does not wait for the
        namespace to finish terminating.
    type: bool
    default: false
  version:
    description: The Harbor version to deploy (C(X.Y.Z)); one operator release serves one Harbor minor version.
    type: str
  external_url:
    description:
      - The URL users reach Harbor at. Defaults to C(https://) followed by O(expose.host).
      - C({tenant}) is replaced by the tenant id.
    type: str
  harbor_class:
    description: The C(goharbor.io/harbor-class) annotation, which selects the operator instance that reconciles.
    type: str
  log_level:
    description: Harbor's log level (C(spec.logLevel)); the operator's default when unset.
    type: str
    choices: [debug, info, warning, error, fatal]
  labels:
    description:
      - Extra labels for the namespace, the Secrets and the HarborCluster. The collection's own labels
        (C(app.kubernetes.io/managed-by), C(harborfleet.io/tenant)) cannot be changed.
    type: dict
  bucket_prefix:
    description: Prefix of the default bucket name C(<bucket_prefix><id>); S3 bucket names are global on AWS.
    type: str
    default: harbor-
  admin_password:
    description:
      - The initial Harbor admin password, written to the Secret C(<id>-admin) (key C(secret)).
      - When unset, an existing Secret is kept and a missing one is created with a generated password.
      - Per tenant only; cannot be set at the top level together with O(tenants).
    type: str
  database:
    description: The external PostgreSQL server (C(spec.database), kind C(PostgreSQL)).
    type: dict
    suboptions:
      host:
        description: Host name or address of the server (required with O(state=present)).
        type: str
      port:
        description: Port of the server.
        type: int
        default: 5432
      ssl_mode:
        description:
          - The C(sslMode) Harbor connects with. Defaults to V(verify-full), which checks the server's certificate
            against the CA and its name against O(database.host).
          - Plain or unverified transport (V(disable), V(allow), V(prefer), V(require)) only when set here.
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      ca_cert:
        description:
          - A file of PEM CA certificates that sign the server's certificate (on the host running the module). Its
            certificates are written to the Secret C(<id>-trust) (key C(ca.crt), with O(storage.ca_cert)'s), which
            the cluster's database clients (C(spec.core) and C(spec.jobservice)) trust through C(certificateRefs),
            added to any that O(spec_overrides) gives.
          - Unset, Harbor verifies the server against its images' system CAs.
          - A changed CA is written to the Secret at once; Harbor's pods read it when they (re)start.
        type: path
      username:
        description: The login Harbor uses. Defaults to C(harbor_<id>) (C(-) as C(_)).
        type: str
      prefix:
        description:
          - Database name prefix; the operator uses C(<prefix>core) (and the notary databases), joined with no
            separator. Defaults to C(<id>_) (C(-) as C(_)).
        type: str
      password:
        description:
          - The login's password, written to the Secret C(<id>-database) under C(postgres-password) and
            C(postgresql-password). Required when that Secret does not exist yet.
          - Per tenant only; cannot be set at the top level together with O(tenants).
        type: str
  cache:
    description: The Redis Sentinel Harbor uses (C(spec.cache), kind C(Redis)).
    type: dict
    suboptions:
      host:
        description: Host of ONE sentinel (the operator takes a single endpoint). Required with O(state=present).
        type: str
      port:
        description: Port of that sentinel.
        type: int
        default: 26379
      master_set:
        description: The sentinel master set of the tenant's Redis. Defaults to C(harbor-<id>).
        type: str
      password:
        description:
          - The Redis password, written to the Secret C(<id>-cache) (key C(redis-password)). Required when that
            Secret does not exist yet.
          - Must be URL-safe (letters and digits only), because the operator puts it into a URL unescaped.
          - Per tenant only; cannot be set at the top level together with O(tenants).
        type: str
  storage:
    description: The S3 (or S3-compatible) bucket for images and charts (C(spec.storage), kind C(S3)).
    type: dict
    suboptions:
      region:
        description: The region (required with O(state=present)).
        type: str
      bucket:
        description: The bucket. Defaults to C(<bucket_prefix><id>). C({tenant}) is replaced by the tenant id.
        type: str
      endpoint:
        description: The endpoint URL of an S3-compatible store (C(regionendpoint)).
        type: str
      access_key:
        description:
          - The access key id. Without it no keys are configured (e.g. for an IAM role).
        type: str
      secret_key:
        description:
          - The secret key, written to the Secret C(<id>-storage) (key C(secret)). Required with O(storage.access_key)
            when that Secret does not exist yet.
        type: str
      secure:
        description: Use HTTPS to reach the store (the operator's default is V(true)).
        type: bool
      v4auth:
        description: Use AWS signature version 4 (the operator's default is V(true)).
        type: bool
      encrypt:
        description: Server-side encryption of stored objects.
        type: bool
      key_id:
        description: The KMS key id for O(storage.encrypt).
        type: str
      root_directory:
        description: A prefix inside the bucket for all of Harbor's objects.
        type: str
      skip_verify:
        description: Do not verify the store's TLS certificate.
        type: bool
      storage_class:
        description: The S3 storage class of new objects.
        type: str
      chunk_size:
        description: Multipart upload chunk size in bytes (at least 5242880).
        type: int
      certificate_secret:
        description: A Secret with the CA certificate of the store.
        type: str
      ca_cert:
        description:
          - A file of PEM CA certificates that sign the store's certificate (on the host running the module), added
            to the Secret C(<id>-trust) (see O(database.ca_cert)) that C(spec.registry) then trusts through
            C(certificateRefs).
        type: path
      redirect:
        description: Let clients download blobs directly from the store (C(spec.storage.spec.redirect.enable)).
        type: bool
  expose:
    description: How Harbor is exposed (C(spec.expose.core), an Ingress).
    type: dict
    suboptions:
      host:
        description: The ingress host (required with O(state=present)). C({tenant}) is replaced by the tenant id.
        type: str
      ingress_class_name:
        description: The C(ingressClassName) of the Ingress.
        type: str
      controller:
        description: The ingress controller flavour the operator adapts annotations to.
        type: str
        choices: [default, gce, ncp, contour]
      annotations:
        description: Extra annotations on the Ingress.
        type: dict
      tls_secret:
        description: The Secret holding the TLS certificate for O(expose.host). C({tenant}) is replaced.
        type: str
  token_issuer:
    description: The cert-manager issuer of Harbor core's token certificate (C(spec.core.tokenIssuer)).
    type: dict
    suboptions:
      name:
        description: Name of the issuer (required with O(state=present)).
        type: str
      kind:
        description: Kind of the issuer.
        type: str
        choices: [Issuer, ClusterIssuer]
        default: Issuer
      group:
        description: API group of the issuer.
        type: str
  trivy:
    description: The Trivy vulnerability scanner (C(spec.trivy)); it needs two persistent volume claims.
    type: dict
    suboptions:
      enabled:
        description: Deploy Trivy.
        type: bool
        default: false
      reports_claim:
        description: PersistentVolumeClaim for reports (required when enabled). C({tenant}) is replaced.
        type: str
      cache_claim:
        description: PersistentVolumeClaim for the vulnerability database cache (required when enabled).
        type: str
      skip_update:
        description: Do not download vulnerability database updates.
        type: bool
      offline_scan:
        description: Scan without network access.
        type: bool
      github_token_secret:
        description: A Secret with a GitHub token for database downloads.
        type: str
      replicas:
        description: Number of Trivy replicas.
        type: int
  notary:
    description: Notary (C(spec.notary)); needs the C(<prefix>notaryserver) and C(<prefix>notarysigner) databases.
    type: dict
    suboptions:
      enabled:
        description: Deploy Notary.
        type: bool
        default: false
      host:
        description: The ingress host of Notary (required when enabled). C({tenant}) is replaced.
        type: str
      tls_secret:
        description: The Secret holding Notary's TLS certificate.
        type: str
      migration_enabled:
        description: Run Notary's database migrations.
        type: bool
      server_replicas:
        description: Number of Notary server replicas.
        type: int
      signer_replicas:
        description: Number of Notary signer replicas.
        type: int
  chartmuseum:
    description: ChartMuseum (C(spec.chartmuseum)).
    type: dict
    suboptions:
      enabled:
        description: Deploy ChartMuseum.
        type: bool
        default: false
      absolute_url:
        description: Return absolute URLs in chart indexes.
        type: bool
      replicas:
        description: Number of ChartMuseum replicas.
        type: int
  image_source:
    description: Where the operator pulls Harbor's images from (C(spec.imageSource)).
    type: dict
    suboptions:
      repository:
        description: Registry and repository prefix of the images.
        type: str
      tag_suffix:
        description: Suffix appended to the image tags.
        type: str
  replicas:
    description:
      - "Replicas per component, a per-plan knob, e.g. C({core: 2, registry: 2})."
      - Components - C(core), C(portal), C(registry), C(registryctl), C(jobservice); optional components take
        theirs in their own option.
    type: dict
  core_max_idle_connections:
    description:
      - Harbor core's idle database connections (C(spec.core.maxIdleConnections)), a per-plan knob.
      - Left out, with a warning, when the installed CRD does not have the field (v1.4.0-rc1 and older).
    type: int
  core_max_open_connections:
    description:
      - Harbor core's maximum open database connections (C(spec.core.maxOpenConnections)), a per-plan knob.
      - Left out, with a warning, when the installed CRD does not have the field.
    type: int
  spec_overrides:
    description:
      - Merged last, recursively, into C(spec), for anything the options do not model. A V(null) value removes a
        field. Fields the installed CRD does not have are refused.
      - Fields the tenant model derives are refused, so no override can point a tenant at another tenant's
        database, master set, bucket or hostname, before anything is changed - the database's and cache's C(kind),
        hosts, user, prefix, master set and password references, the bucket, endpoint, region and keys of the
        storage, C(harborAdminPasswordRef), C(externalURL) and the ingress hosts (or any parent of them).
    type: dict
notes:
  - In the list form, tenants are changed O(concurrency) at a time over one connection pool; with O(wait) each
    worker waits for its tenant.
  - The lab's stand-in for the operator (C(lab/reconciler.py) in the source tree) follows the same status
    contract, so O(wait) can be tested without a cluster that runs pods.
seealso:
  - module: harborfleet.fleet.harbor_cluster_info
  - module: harborfleet.fleet.tenant_database
"""

EXAMPLES = r"""
- name: One tenant, waiting until its Harbor is healthy
  harborfleet.fleet.harbor_cluster:
    kubeconfig: ~/.kube/fleet
    tenant: acme
    version: 2.6.4
    expose:
      host: acme.registry.example.com
      tls_secret: acme-tls
    token_issuer:
      name: harbor-issuer
    database:
      host: db1.internal
      ssl_mode: require
      password: "{{ acme_db_password }}"
    cache:
      host: sentinel.internal
      password: "{{ acme_redis_password }}"
    storage:
      region: eu-west-1
      access_key: "{{ acme_s3_access_key }}"
      secret_key: "{{ acme_s3_secret_key }}"
    wait: true

- name: A fleet; top-level values are defaults for the items, dictionaries merge key by key
  harborfleet.fleet.harbor_cluster:
    version: 2.6.4
    harbor_class: production
    expose:
      host: "{tenant}.registry.example.com"
      tls_secret: "{tenant}-tls"
      ingress_class_name: nginx
    token_issuer: {kind: ClusterIssuer, name: harbor-issuer}
    database: {host: db1.internal, ssl_mode: require}
    cache: {host: sentinel.internal}
    storage: {region: eu-west-1, endpoint: "https://s3.example.com"}
    core_max_open_connections: 200
    concurrency: 16
    tenants:
      - tenant: acme
        database: {password: "{{ vault_db.acme }}"}
        cache: {password: "{{ vault_redis.acme }}"}
        storage: {access_key: "{{ vault_s3.acme.id }}", secret_key: "{{ vault_s3.acme.secret }}"}
      - tenant: globex
        replicas: {core: 2, registry: 2}
        spec_overrides:
          registry: {relativeURLs: false}

- name: Remove a tenant's Harbor and its namespace
  harborfleet.fleet.harbor_cluster:
    tenant: acme
    state: absent
    delete_namespace: true
"""

RETURN = r"""
tenant:
  description: The tenant id (single form).
  returned: single form
  type: str
  sample: acme
namespace:
  description: The tenant's namespace.
  returned: single form
  type: str
  sample: harbor-acme
name:
  description: The HarborCluster's name.
  returned: single form
  type: str
  sample: acme
actions:
  description: What changed (or would change in check mode), in order.
  returned: single form
  type: list
  elements: str
  sample: ["create namespace harbor-acme", "create Secret harbor-acme/acme-database", "create HarborCluster harbor-acme/acme"]
calls:
  description: The API calls made (or that would be made in check mode).
  returned: single form
  type: list
  elements: str
  sample: ["server-side apply HarborCluster harbor-acme/acme (field manager harborfleet)"]
secrets:
  description:
    - Per Secret purpose (database, cache, admin, storage, and trust for the stores' CA certificates) V(created),
      V(changed) or V(unchanged). Never a value.
  returned: single form, state=present
  type: dict
  sample: {database: created, cache: created, admin: created}
status:
  description: C(status.status) of the cluster (after the wait with O(wait)), or V(null) when it is being created or changed.
  returned: single form, state=present
  type: str
  sample: healthy
ready:
  description: Whether the cluster meets the readiness rule (see O(wait)).
  returned: single form, state=present
  type: bool
conditions:
  description: The cluster's conditions after the wait (type, status, reason, message, last_transition_time).
  returned: single form, state=present with wait
  type: list
  elements: dict
spec:
  description: The C(spec) applied (or that would be); it holds only Secret names, never their values.
  returned: single form, state=present
  type: dict
removed_fields:
  description: Fields this module set earlier that the apply removes.
  returned: when there are such fields
  type: list
  elements: str
dropped_fields:
  description: Per-plan fields left out because the installed CRD does not have them.
  returned: when there are such fields
  type: list
  elements: str
  sample: [spec.core.maxIdleConnections]
validation:
  description: >-
    How check mode validated the change: a server-side apply dry run in the tenant's namespace, or, for a tenant
    whose namespace does not exist yet, the installed CRD's schema (check mode sends nothing outside the tenant's
    namespace).
  returned: check mode, when the cluster would change
  type: str
  sample: server-side apply dry run
results:
  description: One entry per tenant, in order, with the single-form fields (except RV(spec)) plus C(changed), C(failed), C(msg).
  returned: list form
  type: list
  elements: dict
failed_tenants:
  description: Ids of the tenants that failed.
  returned: list form
  type: list
  elements: str
summary:
  description: Counts of tenants C(total), C(changed), C(failed), C(skipped).
  returned: list form
  type: dict
  sample: {total: 50, changed: 2, failed: 0, skipped: 0}
"""

from ansible_collections.harborfleet.fleet.plugins.module_utils._harbor_cluster import HarborClusterBackend
from ansible_collections.harborfleet.fleet.plugins.module_utils._harbor_spec import HarborClusterSpec
from ansible_collections.harborfleet.fleet.plugins.module_utils._k8s_client import (
    CONNECTION_SPEC, KUBERNETES_IMPORT_ERROR, KubeClient, k8s_client)
from ansible_collections.harborfleet.fleet.plugins.module_utils._module import (
    FleetModule, merge_tenant_items, refuse_shared_secrets)

DATABASE = dict(
    host=dict(type="str"),
    port=dict(type="int", default=5432),
    ssl_mode=dict(type="str", choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
    ca_cert=dict(type="path"),
    username=dict(type="str"),
    prefix=dict(type="str"),
    password=dict(type="str", no_log=True),
)
CACHE = dict(
    host=dict(type="str"),
    port=dict(type="int", default=26379),
    master_set=dict(type="str"),
    password=dict(type="str", no_log=True),
)
STORAGE = dict(
    region=dict(type="str"),
    bucket=dict(type="str"),
    endpoint=dict(type="str"),
    access_key=dict(type="str", no_log=False),
    secret_key=dict(type="str", no_log=True),
    secure=dict(type="bool"),
    v4auth=dict(type="bool"),
    encrypt=dict(type="bool"),
    key_id=dict(type="str", no_log=False),
    root_directory=dict(type="str"),
    skip_verify=dict(type="bool"),
    storage_class=dict(type="str"),
    chunk_size=dict(type="int"),
    certificate_secret=dict(type="str", no_log=False),
    ca_cert=dict(type="path"),
    redirect=dict(type="bool"),
)
EXPOSE = dict(
    host=dict(type="str"),
    ingress_class_name=dict(type="str"),
    controller=dict(type="str", choices=["default", "gce", "ncp", "contour"]),
    annotations=dict(type="dict"),
    tls_secret=dict(type="str", no_log=False),
)
TOKEN_ISSUER = dict(
    name=dict(type="str"),
    kind=dict(type="str", choices=["Issuer", "ClusterIssuer"], default="Issuer"),
    group=dict(type="str"),
)
TRIVY = dict(
    enabled=dict(type="bool", default=False),
    reports_claim=dict(type="str"),
    cache_claim=dict(type="str"),
    skip_update=dict(type="bool"),
    offline_scan=dict(type="bool"),
    github_token_secret=dict(type="str", no_log=False),
    replicas=dict(type="int"),
)
NOTARY = dict(
    enabled=dict(type="bool", default=False),
    host=dict(type="str"),
    tls_secret=dict(type="str", no_log=False),
    migration_enabled=dict(type="bool"),
    server_replicas=dict(type="int"),
    signer_replicas=dict(type="int"),
)
CHARTMUSEUM = dict(
    enabled=dict(type="bool", default=False),
    absolute_url=dict(type="bool"),
    replicas=dict(type="int"),
)
IMAGE_SOURCE = dict(
    repository=dict(type="str"),
    tag_suffix=dict(type="str"),
)

SECTIONS = dict(database=DATABASE, cache=CACHE, storage=STORAGE, expose=EXPOSE, token_issuer=TOKEN_ISSUER,
                trivy=TRIVY, notary=NOTARY, chartmuseum=CHARTMUSEUM, image_source=IMAGE_SOURCE)

TENANT_SPEC = dict(
    version=dict(type="str"),
    external_url=dict(type="str"),
    harbor_class=dict(type="str"),
    log_level=dict(type="str", choices=["debug", "info", "warning", "error", "fatal"]),
    labels=dict(type="dict"),
    bucket_prefix=dict(type="str", default="harbor-"),
    admin_password=dict(type="str", no_log=True),
    replicas=dict(type="dict"),
    core_max_idle_connections=dict(type="int"),
    core_max_open_connections=dict(type="int"),
    spec_overrides=dict(type="dict"),
    # token_issuer is a reference to a cert-manager issuer, not a token
    **{name: dict(type="dict", options=options, **({"no_log": False} if name == "token_issuer" else {}))
       for name, options in SECTIONS.items()}
)

ARGUMENT_SPEC = dict(
    CONNECTION_SPEC,
    state=dict(type="str", default="present", choices=["present", "absent"]),
    wait=dict(type="bool", default=False),
    wait_timeout=dict(type="int", default=600),
    force_conflicts=dict(type="bool", default=False),
    delete_namespace=dict(type="bool", default=False),
)


def main():
    fm = FleetModule(ARGUMENT_SPEC, TENANT_SPEC, per_tenant_only=("admin_password",),
                     libraries={"kubernetes": (k8s_client, KUBERNETES_IMPORT_ERROR)})
    params = fm.params

    def tenant_specs():
        refuse_shared_secrets(params, (("database", "password"), ("cache", "password")))
        items = merge_tenant_items(fm.tenant_params(), params, tuple(SECTIONS) + ("labels", "replicas"),
                                   deep_options=("spec_overrides",))
        return [HarborClusterSpec(item, params["state"], params["delete_namespace"]) for item in items]

    specs = fm.guard(tenant_specs)
    kube = fm.guard(KubeClient, params, pool_size=fm.concurrency() + 2)
    backend = HarborClusterBackend(
        kube, check_mode=fm.check_mode, force_conflicts=params["force_conflicts"], wait=params["wait"],
        wait_timeout=params["wait_timeout"], concurrency=fm.concurrency(), return_spec=not fm.is_list_form,
        warn=fm.module.warn)
    finalize = backend.finalize if params["wait"] and params["state"] == "present" else None
    try:
        fm.converge(backend, specs, finalize=finalize)
    finally:
        kube.close()


if __name__ == "__main__":
    main()
