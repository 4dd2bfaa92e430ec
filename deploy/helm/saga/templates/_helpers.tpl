{{/* The service's name: order, stock or payment. */}}
{{- define "saga.name" -}}
{{- required "name is required: order, stock or payment" .Values.name -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "saga.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: saga
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/*
Selector labels of one component (api, relay, database). Every Deployment
and Service selects on all three, so that a Service catches only the pods of
its own component and release; the original demo's `app: <name>` selector
(docs/origin.md) also caught its consumer and producer pods.
Call: include "saga.selector" (list . "api")
*/}}
{{- define "saga.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "saga.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "saga.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-secret" (include "saga.name" .)) -}}
{{- end -}}

{{/*
The chart's Postgres roles go into URLs and SQL: role names are lower-case
identifiers, passwords URL-safe characters (letters, digits, - . _ ~), so
that neither needs escaping. Anything else fails the render.
*/}}
{{- define "saga.checkRoles" -}}
{{- $pg := .Values.postgres -}}
{{- range $k := list "user" "ownerRole" "relayRole" -}}
{{- if not (regexMatch "^[a-z_][a-z0-9_]{0,62}$" (index $pg $k | toString)) -}}
{{- fail (printf "postgres.%s %q: want a lower-case identifier (a-z, 0-9, _)" $k (index $pg $k | toString)) -}}
{{- end -}}
{{- end -}}
{{- range $k := list "password" "ownerPassword" "relayPassword" -}}
{{- if not (regexMatch "^[A-Za-z0-9._~-]+$" (index $pg $k | toString)) -}}
{{- fail (printf "postgres.%s: want letters, digits and - . _ ~ only (it goes into a URL unescaped)" $k) -}}
{{- end -}}
{{- end -}}
{{- if or (eq $pg.ownerRole $pg.relayRole) (eq $pg.user $pg.ownerRole) (eq $pg.user $pg.relayRole) -}}
{{- fail "postgres.user, postgres.ownerRole and postgres.relayRole must be three roles" -}}
{{- end -}}
{{- end -}}

{{- define "saga.databaseURL" -}}
{{- if .Values.database.url -}}
{{- .Values.database.url -}}
{{- else if .Values.postgres.enabled -}}
{{- printf "postgres://%s:%s@%s-db-service:5432/%s?sslmode=disable" .Values.postgres.ownerRole .Values.postgres.ownerPassword (include "saga.name" .) .Values.postgres.db -}}
{{- else -}}
{{- fail "database.url is required when postgres.enabled is false" -}}
{{- end -}}
{{- end -}}

{{- define "saga.relayDatabaseURL" -}}
{{- if .Values.database.relayUrl -}}
{{- .Values.database.relayUrl -}}
{{- else if and .Values.postgres.enabled (not .Values.database.url) -}}
{{- printf "postgres://%s:%s@%s-db-service:5432/%s?sslmode=disable" .Values.postgres.relayRole .Values.postgres.relayPassword (include "saga.name" .) .Values.postgres.db -}}
{{- else -}}
{{- include "saga.databaseURL" . -}}
{{- end -}}
{{- end -}}

{{/* The role the grant init container gives SELECT on the outbox; empty: none. */}}
{{- define "saga.relayRole" -}}
{{- if .Values.database.relayRole -}}
{{- .Values.database.relayRole -}}
{{- else if and .Values.postgres.enabled (not .Values.database.url) (not .Values.database.relayUrl) -}}
{{- .Values.postgres.relayRole -}}
{{- end -}}
{{- end -}}

{{/*
The pod volumes of <name>-secret, read as files under /run/secrets/saga:
each container mounts only the keys it uses. saga-secret (DATABASE_URL,
AMQP_URL) is the service's, its migrations' and relay-grant's: the owner;
saga-relay-secret (RELAY_DATABASE_URL, AMQP_URL) is the relay's.
Call: include "saga.secretVolumes" (list . withApp withRelay)
*/}}
{{- define "saga.secretVolumes" -}}
{{- $ := index . 0 -}}
{{- if index . 1 }}
- name: saga-secret
  secret:
    secretName: {{ include "saga.secretName" $ }}
    defaultMode: 0444
    items:
      - {key: DATABASE_URL, path: DATABASE_URL}
      - {key: AMQP_URL, path: AMQP_URL}
{{- end }}
{{- if index . 2 }}
- name: saga-relay-secret
  secret:
    secretName: {{ include "saga.secretName" $ }}
    defaultMode: 0444
    items:
      - {key: RELAY_DATABASE_URL, path: RELAY_DATABASE_URL}
      - {key: AMQP_URL, path: AMQP_URL}
{{- end }}
{{- end -}}

{{- define "saga.secretMount" -}}
- name: saga-secret
  mountPath: /run/secrets/saga
  readOnly: true
{{- end -}}

{{- define "saga.relaySecretMount" -}}
- name: saga-relay-secret
  mountPath: /run/secrets/saga
  readOnly: true
{{- end -}}

{{- define "saga.image" -}}
{{- $repo := required "image.repository is required (e.g. saga/order)" .Values.image.repository -}}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "saga.relaySlot" -}}
{{- .Values.relay.slot | default (printf "saga_%s" (include "saga.name" .)) -}}
{{- end -}}

{{- define "saga.relayMode" -}}
{{- $mode := .Values.relay.mode -}}
{{- if not (has $mode (list "sidecar" "deployment")) -}}
{{- fail (printf "relay.mode %q: want sidecar or deployment" $mode) -}}
{{- end -}}
{{- $mode -}}
{{- end -}}

{{- define "saga.queueType" -}}
{{- $t := .Values.queueType | default "classic" -}}
{{- if not (has $t (list "classic" "quorum")) -}}
{{- fail (printf "queueType %q: want classic (one broker) or quorum (a RabbitMQ cluster)" $t) -}}
{{- end -}}
{{- $t -}}
{{- end -}}

{{/* An httpGet probe from a values block: path, periods, thresholds. */}}
{{- define "saga.probe" -}}
{{- $p := index . 0 -}}
httpGet:
  path: {{ $p.path }}
  port: {{ index . 1 }}
{{- with $p.initialDelaySeconds }}
initialDelaySeconds: {{ . }}
{{- end }}
periodSeconds: {{ $p.periodSeconds | default 10 }}
timeoutSeconds: {{ $p.timeoutSeconds | default 2 }}
failureThreshold: {{ $p.failureThreshold | default 3 }}
{{- end -}}

{{/* The init container that applies the service's migrations. */}}
{{- define "saga.migrateContainer" -}}
- name: migrate
  image: {{ include "saga.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: [migrate]
  env:
    - name: DATABASE_URL_FILE
      value: /run/secrets/saga/DATABASE_URL
    - name: AMQP_URL_FILE
      value: /run/secrets/saga/AMQP_URL
    - name: LOG_FORMAT
      value: {{ .Values.logFormat | quote }}
  volumeMounts:
    {{- include "saga.secretMount" . | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
{{- end -}}

{{/*
The init container that grants the relay's role SELECT on the outbox, as
the service's (owner) URL, after the migrations made it: `cdc-relay role
create` on a role that has LOGIN REPLICATION already only grants.
*/}}
{{- define "saga.relayGrantContainer" -}}
{{- $r := .Values.relay -}}
- name: relay-grant
  image: {{ printf "%s:%s" $r.image.repository ($r.image.tag | default .Chart.AppVersion) }}
  imagePullPolicy: {{ $r.image.pullPolicy }}
  args: [role, create, --role, {{ include "saga.relayRole" . | quote }}, --table, {{ $r.table | quote }}]
  env:
    - name: CDC_RELAY_DATABASE_URL_FILE
      value: /run/secrets/saga/DATABASE_URL
    - name: CDC_RELAY_LOG_FORMAT
      value: {{ $r.logFormat | quote }}
  volumeMounts:
    {{- include "saga.secretMount" . | nindent 4 }}
  resources:
    {{- toYaml $r.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
{{- end -}}

{{/*
The cdc-relay container, for both modes. A sidecar gets no readiness probe:
with several replicas all but one relay are standbys, which are not ready by
design, and a not-ready sidecar would take its service pod out of the
Service.
As a sidecar it is a native one: an init container with restartPolicy Always.
Call: include "saga.relayContainer" (list . withReadiness asSidecar)
*/}}
{{- define "saga.relayContainer" -}}
{{- $ := index . 0 -}}
{{- $withReadiness := index . 1 -}}
{{- $asSidecar := and (gt (len .) 2) (index . 2) -}}
{{- $r := $.Values.relay -}}
- name: cdc-relay
  {{- if $asSidecar }}
  restartPolicy: Always
  {{- end }}
  image: {{ printf "%s:%s" $r.image.repository ($r.image.tag | default $.Chart.AppVersion) }}
  imagePullPolicy: {{ $r.image.pullPolicy }}
  args: [run]
  ports:
    - name: relay-http
      containerPort: {{ $r.metricsPort }}
      protocol: TCP
  env:
    - name: CDC_RELAY_DATABASE_URL_FILE
      value: /run/secrets/saga/RELAY_DATABASE_URL
    - name: CDC_RELAY_AMQP_URL_FILE
      value: /run/secrets/saga/AMQP_URL
    - name: CDC_RELAY_SLOT
      value: {{ include "saga.relaySlot" $ | quote }}
    - name: CDC_RELAY_PUBLICATION
      value: {{ $r.publication | quote }}
    - name: CDC_RELAY_TABLE
      value: {{ $r.table | quote }}
    - name: CDC_RELAY_EXCHANGE
      value: {{ $.Values.exchange | quote }}
    - name: CDC_RELAY_HTTP_ADDR
      value: {{ printf ":%v" $r.metricsPort | quote }}
    - name: CDC_RELAY_MAX_IN_FLIGHT
      value: {{ $r.maxInFlight | quote }}
    - name: CDC_RELAY_HEARTBEAT_INTERVAL
      value: {{ $r.heartbeatInterval | quote }}
    - name: CDC_RELAY_LOG_FORMAT
      value: {{ $r.logFormat | quote }}
    - name: CDC_RELAY_LOG_LEVEL
      value: {{ $r.logLevel | quote }}
    {{- range $k, $v := $r.env }}
    - name: {{ $k }}
      value: {{ $v | quote }}
    {{- end }}
  volumeMounts:
    {{- include "saga.relaySecretMount" $ | nindent 4 }}
  livenessProbe:
    {{- include "saga.probe" (list $r.probes.liveness "relay-http") | nindent 4 }}
  {{- if $withReadiness }}
  readinessProbe:
    {{- include "saga.probe" (list $r.probes.readiness "relay-http") | nindent 4 }}
  {{- end }}
  resources:
    {{- toYaml $r.resources | nindent 4 }}
  securityContext:
    {{- toYaml $.Values.securityContext | nindent 4 }}
{{- end -}}
