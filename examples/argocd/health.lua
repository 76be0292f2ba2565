-- Argo CD health of a JoynScimTenant (scim.sevenlakes.com/v1alpha1), read from the status
-- conditions the operator writes (operator/joyn_operator/status.py). argocd-cm runs it
-- without Lua's standard libraries (no string.*, no os.*): only base and table functions.
--   Suspended    the tenant is paused (the operator leaves its children alone)
--   Progressing  no status yet, the operator has not seen the latest spec, or Ready=False
--                for a reason that ends by itself (pods starting, a volume or a certificate
--                being made, the ingress controller admitting the Ingress, the operator's
--                first Test Connection through it)
--   Degraded     Degraded=True, or Ready=False for a reason that needs a person
--   Healthy      Ready=True for the current generation: Entra can provision
-- Ready=False reasons that end by themselves; every other one needs a person. A new reason
-- the operator writes must join one of the two lists (tests/test_chart_artifact.py checks).
local WAITING = {
  Deploying = true, PodPending = true, VolumePending = true, IngressMissing = true,
  IngressPending = true, CertificatePending = true, RoutePending = true,
  DatabaseProvisioning = true, StorageMoving = true,
}
local FAILING = {
  ImagePullBackOff = true, ErrImagePull = true, InvalidImageName = true,
  CrashLoopBackOff = true, CreateContainerConfigError = true, CreateContainerError = true,
  RunContainerError = true, ApplyFailed = true, TokenReplaced = true, HostConflict = true,
  NameConflict = true, VolumeLost = true, TokenMissing = true, HostUnknown = true,
  IngressClassNotFound = true, TLSSecretMissing = true, TLSCertificateInvalid = true,
  TLSCertificateExpired = true, CertificateFailed = true, RouteUnreachable = true,
  EventsPushAuthorizationMissing = true, DatabaseSecretMissing = true,
  DatabaseSecretInvalid = true, DatabaseClusterMissing = true,
  DatabaseProvisioningFailed = true, DatabaseAuthFailed = true, DatabaseMissing = true,
  DatabaseUnreachable = true, StorageMoveFailed = true,
}

local function condition(name)
  for _, c in ipairs((obj.status or {}).conditions or {}) do
    if c.type == name then
      return c
    end
  end
  return nil
end

local function said(c)
  return (c.reason or "") .. ": " .. (c.message or "")
end

if obj.status == nil or obj.status.conditions == nil then
  return {status = "Progressing", message = "Waiting for the operator's first status"}
end

local paused = condition("Paused")
if paused ~= nil and paused.status == "True" then
  return {status = "Suspended", message = paused.message or "Paused"}
end

local generation = obj.metadata.generation or 0
local observed = obj.status.observedGeneration or 0
if observed < generation then
  return {status = "Progressing", message = "The operator has not yet reconciled generation "
    .. generation .. " (status is of " .. observed .. ")"}
end

local degraded = condition("Degraded")
if degraded ~= nil and degraded.status == "True" then
  return {status = "Degraded", message = said(degraded)}
end

local ready = condition("Ready")
if ready == nil then
  return {status = "Progressing", message = "No Ready condition yet"}
end
if (ready.observedGeneration or generation) < generation then
  return {status = "Progressing", message = "Ready describes an older generation"}
end
if ready.status == "True" then
  return {status = "Healthy", message = ready.message or "Ready"}
end
if WAITING[ready.reason] then
  return {status = "Progressing", message = said(ready)}
end
if FAILING[ready.reason] then
  return {status = "Degraded", message = said(ready)}
end
-- A reason this script does not know (a newer operator): a person looks, rather than a sync
-- waiting on it for good.
return {status = "Degraded", message = said(ready) .. " (a reason this health check does not know)"}
