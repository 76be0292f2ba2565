-- An Application's health is its own status.health (Argo CD stopped assessing it in 1.8):
-- without this, a parent Application's sync waves do not wait for the child to be Healthy.
local hs = {status = "Progressing", message = ""}
if obj.status ~= nil and obj.status.health ~= nil then
  hs.status = obj.status.health.status
  hs.message = obj.status.health.message or ""
end
return hs
