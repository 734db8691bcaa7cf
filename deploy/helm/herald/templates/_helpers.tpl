{{/*
The release's name for Herald's objects: the release name when it holds
"herald", else "<release>-herald".
*/}}
{{- define "herald.fullname" -}}
{{- if contains "herald" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-herald" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "herald.issuerName" -}}
{{- printf "%s-issuer" (include "herald.fullname" .) -}}
{{- end -}}

{{/* Labels every object of the chart carries. */}}
{{- define "herald.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: herald
{{- end -}}

{{/* The issuer pods' selector. */}}
{{- define "herald.issuerSelector" -}}
app.kubernetes.io/name: herald-issuer
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "herald.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
NATS host:port: natsHost, else the NATS subchart's Service, named as the
NATS chart names it (nats.fullname: the release name when it holds
"nats", else "<release>-nats").
*/}}
{{- define "herald.natsHost" -}}
{{- if .Values.natsHost -}}
{{- .Values.natsHost -}}
{{- else if not .Values.nats.enabled -}}
{{- fail "natsHost is required when nats.enabled is false" -}}
{{- else if .Values.nats.fullnameOverride -}}
{{- printf "%s:4222" .Values.nats.fullnameOverride -}}
{{- else if contains "nats" .Release.Name -}}
{{- printf "%s:4222" .Release.Name -}}
{{- else -}}
{{- printf "%s-nats:4222" .Release.Name -}}
{{- end -}}
{{- end -}}

{{- define "herald.eventKeySecret" -}}
{{- .Values.eventKey.existingSecret | default (printf "%s-event-key" (include "herald.fullname" .)) -}}
{{- end -}}

{{- define "herald.adminSecret" -}}
{{- .Values.admin.existingSecret | default (printf "%s-admin" (include "herald.fullname" .)) -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for Herald's containers. */}}
{{- define "herald.containerSecurityContext" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/*
herald.verifierSidecar renders the verifier as one item of a pod's
containers list; herald.verifierVolumes renders the volumes it mounts, as
items of the pod's volumes list. Both take a dict:

  v:      the verifier values (as .Values.verifier of this chart)
  image:  the herald image, repository:tag
  issuer: the accepted iss claim (the issuer's --issuer-url)
  audience: the accepted audience
  eventKid: the event key's kid, pinned
  natsHost: NATS host:port

An application chart that lists this chart as a dependency, with
herald.issuer.enabled=false and herald.nats.enabled=false so that it renders
nothing of its own, includes them in its pod spec:

  containers:
    - name: app
      ...
    {{- include "herald.verifierSidecar" (dict "v" .Values.verifier
          "image" "ghcr.io/heraldsec/herald:latest" "issuer" "https://auth.example.com"
          "audience" "herald" "eventKid" "<kid>" "natsHost" "herald-nats.herald.svc:4222") | nindent 8 }}
  volumes:
    {{- include "herald.verifierVolumes" (dict "v" .Values.verifier) | nindent 8 }}
*/}}
{{- define "herald.verifierSidecar" -}}
{{- $v := .v -}}
{{- $mode := $v.mode -}}
{{- if not (has $mode (list "forward-auth" "proxy" "cookie")) -}}
{{- fail (printf "verifier.mode %q: want forward-auth, proxy or cookie" $mode) -}}
{{- end -}}
{{- if not .issuer -}}{{- fail "the verifier needs the issuer URL (issuerURL)" -}}{{- end -}}
{{- if not .eventKid -}}{{- fail "the verifier needs the event key's kid (eventKey.kid)" -}}{{- end -}}
{{- $proxied := ne $mode "forward-auth" -}}
{{- $probePort := ternary "herald-admin" "herald" $proxied -}}
- name: herald-verifier
  image: {{ .image | quote }}
  imagePullPolicy: {{ $v.pullPolicy }}
  args:
    - verifier
    # The kubelet probes the pod's IP, not its loopback.
    - --http=0.0.0.0:{{ $v.port }}
    {{- if $proxied }}
    - --admin-http=0.0.0.0:{{ $v.adminPort }}
    - --upstream={{ required "verifier.upstream is required in proxy and cookie modes" $v.upstream }}
    {{- end }}
    {{- if $v.grpcPort }}
    # Only the pod's Envoy calls it: on loopback, no other pod can hold
    # calls open against it, nor pass for a trusted proxy through the
    # mesh's inbound path (Istio connects from 127.0.0.6).
    - --grpc=127.0.0.1:{{ $v.grpcPort }}
    {{- end }}
    - --data=/var/lib/herald
    - --issuer={{ .issuer }}
    - --audience={{ .audience }}
    - --max-staleness={{ $v.maxStaleness }}
    - --on-stale={{ $v.onStale }}
    - --log-level={{ $v.logLevel }}
    {{- if eq $mode "cookie" }}
    {{- $c := $v.cookie }}
    - --cookie-sessions
    - --issuer-url={{ $c.issuerURL | default .issuer }}
    {{- if $c.keySecret }}
    - --cookie-key-file=/etc/herald-cookie/cookie.key
    {{- end }}
    - --cookie-idle={{ $c.idle }}
    - --cookie-max-age={{ $c.maxAge }}
    {{- with $c.loginPath }}
    - --cookie-login-path={{ . }}
    {{- end }}
    {{- with $c.public }}
    - --cookie-public={{ join "," . }}
    {{- end }}
    {{- if $c.clientID }}
    - --cookie-client-id={{ $c.clientID }}
    - --cookie-client-secret-file=/etc/herald-cookie-client/client-secret
    {{- end }}
    {{- end }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: NATS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ $v.natsPasswordSecret.name }}
          key: {{ $v.natsPasswordSecret.key }}
    # The NATS URL with the verifier user's password, expanded by the kubelet.
    - name: HERALD_NATS
      value: "nats://verifier:$(NATS_PASSWORD)@{{ $v.natsHost | default .natsHost }}"
    # The issuers' event key, pinned: only events and keys it signed are trusted.
    - name: HERALD_EVENT_KEYS
      value: {{ .eventKid | quote }}
    # The fleet id: the pod's name, stable for the pod's life.
    - name: HERALD_ID
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: GOMEMLIMIT
      value: {{ $v.goMemLimit | quote }}
  ports:
    - name: herald
      containerPort: {{ $v.port }}
    {{- if $proxied }}
    - name: herald-admin
      containerPort: {{ $v.adminPort }}
    {{- end }}
    {{- if $v.grpcPort }}
    - name: herald-grpc
      containerPort: {{ $v.grpcPort }}
    {{- end }}
  startupProbe:
    httpGet:
      path: /healthz
      port: {{ $probePort }}
    periodSeconds: 1
    failureThreshold: 30
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ $probePort }}
    periodSeconds: 10
    failureThreshold: 3
  readinessProbe:
    # Ready once the denylist has caught up with the stream and the bus is
    # reachable: no traffic before every revocation in force is applied.
    httpGet:
      path: /readyz
      port: {{ $probePort }}
    periodSeconds: 2
    failureThreshold: 1
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- include "herald.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: herald-data
      mountPath: /var/lib/herald
    {{- if and (eq $mode "cookie") $v.cookie.keySecret }}
    - name: herald-cookie-key
      mountPath: /etc/herald-cookie
      readOnly: true
    {{- end }}
    {{- if and (eq $mode "cookie") $v.cookie.clientID }}
    - name: herald-cookie-client
      mountPath: /etc/herald-cookie-client
      readOnly: true
    {{- end }}
{{- end -}}

{{- define "herald.verifierVolumes" -}}
{{- $v := .v -}}
- name: herald-data
  emptyDir:
    sizeLimit: {{ $v.dataSizeLimit }}
{{- if and (eq $v.mode "cookie") $v.cookie.keySecret }}
- name: herald-cookie-key
  secret:
    secretName: {{ $v.cookie.keySecret }}
    items:
      - key: cookie.key
        path: cookie.key
    # Owner-only: the verifier refuses a key others may read.
    defaultMode: 0400
{{- end }}
{{- if and (eq $v.mode "cookie") $v.cookie.clientID }}
- name: herald-cookie-client
  secret:
    secretName: {{ required "verifier.cookie.clientSecretSecret is required with verifier.cookie.clientID" $v.cookie.clientSecretSecret }}
    items:
      - key: client-secret
        path: client-secret
    defaultMode: 0400
{{- end }}
{{- end -}}

